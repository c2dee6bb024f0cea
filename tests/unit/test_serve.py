"""The serve command's supervision of tritonserver, with a stand-in executable.

The real stack is started by the server tier; what a real tritonserver does
only by bad luck (abort while it starts its Python-backend stubs) is played
here by a script given as --tritonserver.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from pathlib import Path

from dsocr import serve as serve_module
from tests.helpers import free_port

# Aborts (SIGABRT, as Triton's uncaught boost exception does) on its first
# `aborts` starts, then answers readiness on --http-port until SIGTERM. With
# `dies_on_load`, its first start says the preprocess model is not ready and
# dies when asked to load it, as Triton 2.51 can while it finalises an instance
# whose stub died; a child started for the load holds the load's connection
# and lives while its server does (kill(pid, 0)), as a Python-backend stub does.
STAND_IN = textwrap.dedent("""\
    #!{python}
    import http.server, json, os, signal, sys, time
    starts = {starts!r}
    count = int(open(starts).read()) + 1 if os.path.exists(starts) else 1
    open(starts, "w").write(str(count))
    if count <= {aborts}:
        os.kill(os.getpid(), signal.SIGABRT)
    port = int(next(a for a in sys.argv if a.startswith("--http-port=")).split("=")[1])
    broken = {dies_on_load} and count == 1

    class Triton(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200 if self.path.endswith("/ready") else 404)  # the ensemble is ready
            self.end_headers()

        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            if self.path.endswith("/preprocess/load") and broken:
                server = os.getpid()
                if os.fork() == 0:  # the stub
                    while True:
                        time.sleep(0.3)
                        try:
                            os.kill(server, 0)
                        except ProcessLookupError:
                            os._exit(0)
                os.kill(server, signal.SIGKILL)
            body = b"{{}}"
            if self.path.endswith("/index"):
                body = json.dumps([{{"name": "preprocess", "state": "UNAVAILABLE" if broken else "READY"}}]).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", port), Triton)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    if {dies_after_s} is not None:  # a server that dies on its own once it has been ready
        signal.signal(signal.SIGALRM, lambda *_: os._exit(3))
        signal.alarm({dies_after_s})
    server.serve_forever()
""")


def serve(
    tmp_path: Path,
    aborts: int,
    dies_after_s: int | None = None,
    *flags: str,
    dies_on_load: bool = False,
    until: str = "[serve] ready",
) -> tuple[subprocess.CompletedProcess, int]:
    """Run the serve command (Triton only) until it prints `until`, then stop it (unless its tritonserver dies
    first); its output and tritonserver's start count. Killed after 60 s: a serve command that hangs fails."""
    starts = tmp_path / "starts"
    stand_in = tmp_path / "tritonserver"
    stand_in.write_text(
        STAND_IN.format(
            python=sys.executable,
            starts=str(starts),
            aborts=aborts,
            dies_after_s=dies_after_s,
            dies_on_load=dies_on_load,
        )
    )
    stand_in.chmod(0o755)
    command = [
        sys.executable,
        "-m",
        "dsocr.serve",
        "--no-frontend",
        "--device=cpu",
        "--model=unused",
        f"--tritonserver={stand_in}",
        f"--triton-http-port={free_port()}",
        "--ready-timeout-s=30",
        *flags,
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    hang = threading.Timer(60, process.kill)
    hang.start()
    lines = []
    for line in process.stdout:
        lines.append(line)
        if line.startswith(until) and dies_after_s is None:
            process.terminate()
    process.wait(timeout=30)
    hang.cancel()
    return subprocess.CompletedProcess(command, process.returncode, "".join(lines)), int(starts.read_text())


def test_a_tritonserver_that_aborts_while_starting_is_started_again(tmp_path):
    result, starts = serve(tmp_path, aborts=2)
    assert starts == 3
    assert result.stdout.count("aborted while starting") == 2
    assert "[serve] ready" in result.stdout and result.returncode == 0


def test_a_tritonserver_that_keeps_aborting_is_given_up(tmp_path):
    result, starts = serve(tmp_path, aborts=5)
    assert starts == 3
    assert "[serve] ready" not in result.stdout and result.returncode == 1


def test_a_tritonserver_that_dies_is_started_again_until_its_heals_are_spent(tmp_path):
    # Healed in place twice; the third death within the window ends the service with 1, so that a restart
    # policy (Docker, Kubernetes) takes over.
    result, starts = serve(tmp_path, 0, 2, "--heal-attempts=2", "--heal-window-s=600")
    assert "[serve] ready" in result.stdout and result.stdout.count("tritonserver exited with 3") == 3
    assert result.stdout.count("tritonserver healed in") == 2 and "giving up" in result.stdout
    assert result.returncode == 1 and starts == 3


def test_a_tritonserver_that_dies_reloading_a_model_is_restarted_at_once(tmp_path):
    # Reaped at once, its stub goes and the load's connection with it: the reload fails in a moment, not after
    # the repository call's 600 s timeout, and the next attempt restarts the server.
    result, starts = serve(tmp_path, 0, dies_on_load=True, until="[serve] preprocess healed")
    assert "preprocess is down" in result.stdout and "loading preprocess failed" in result.stdout
    assert "tritonserver exited with -9 while preprocess was reloaded; restarting it" in result.stdout
    assert "[serve] preprocess healed" in result.stdout and result.returncode == 0 and starts == 2


def test_the_frontend_answers_to_the_model_triton_serves(monkeypatch):
    monkeypatch.delenv("MODEL", raising=False)
    named = serve_module.Stack(serve_module.parse_args(["--device=gpu", "--model=deepseek-ai/DeepSeek-OCR-2"]))
    assert named.frontend_env()["MODEL"] == "deepseek-ai/DeepSeek-OCR-2"
    from_file = serve_module.Stack(serve_module.parse_args(["--device=gpu"]))
    assert from_file.frontend_env()["MODEL"] == "deepseek-ai/DeepSeek-OCR"  # engine.json's


def test_with_no_gpu_and_no_model_it_serves_the_tiny_model_and_says_so(monkeypatch, tmp_path, capsys):
    monkeypatch.delenv("MODEL", raising=False)
    monkeypatch.setenv("DSOCR_CACHE_DIR", str(tmp_path))
    args = serve_module.parse_args(["--device=cpu"])
    assert args.tiny_model and args.model == str(tmp_path / "models" / "tiny-deepseek-ocr")
    # Stopped before anything starts: only the banner is printed.
    monkeypatch.setattr(serve_module.Stack, "start_triton", lambda self, stopping: False)
    assert serve_module.main(["--device=cpu"]) == 1
    banner = capsys.readouterr().out
    assert "TINY RANDOM-WEIGHT model" in banner and "meaningless" in banner and args.model in banner


def test_frontend_address_defaults_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("DSOCR_HOST", "127.0.0.2")
    monkeypatch.setenv("DSOCR_PORT", "9123")
    args = serve_module.parse_args(["--device=cpu", "--model=x"])
    assert (args.host, args.port) == ("127.0.0.2", 9123)
