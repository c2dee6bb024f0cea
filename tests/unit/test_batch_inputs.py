"""`dsocr ocr`'s INPUTs: files, folders, globs, list files and stdin -> documents and their output names;
--shard I/N splitting a corpus disjointly and completely."""

from __future__ import annotations

import io
from pathlib import Path, PurePosixPath

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dsocr.batch.inputs import InputDocument, InputError, Shard, discover, select_shard, shard_of


def touch(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def names(documents: list[InputDocument]) -> list[str]:
    return [str(document.name) for document in documents]


@pytest.fixture
def corpus(tmp_path) -> Path:
    root = tmp_path / "corpus"
    for relative in ["a/x.pdf", "b/x.pdf", "b/deep/scan.TIFF", "page.png", "notes.md", ".hidden.pdf"]:
        touch(root / relative)
    return root


def test_a_folder_is_searched_recursively_for_documents_named_relative_to_it(corpus):
    documents = discover([str(corpus)])
    assert names(documents) == ["a/x", "b/deep/scan", "b/x", "page"]  # sorted; no .md, no hidden file
    assert {document.path for document in documents} == {
        corpus / "a/x.pdf",
        corpus / "b/deep/scan.TIFF",
        corpus / "b/x.pdf",
        corpus / "page.png",
    }


def test_a_file_named_on_the_command_line_is_a_document_whatever_its_suffix(corpus):
    [document] = discover([str(corpus / "notes.md")])
    assert (document.name, document.path) == (PurePosixPath("notes"), corpus / "notes.md")


def test_a_glob_names_documents_from_its_fixed_prefix(corpus):
    documents = discover([str(corpus / "b" / "**" / "*.*")])
    assert names(documents) == ["deep/scan", "x"]


def test_a_list_file_names_paths_relative_to_itself_from_their_common_folder(corpus, tmp_path):
    listing = tmp_path / "corpus" / "todo.txt"
    listing.write_text("# the scans\na/x.pdf\n\n  b/deep/scan.TIFF  \n")
    assert names(discover([str(listing)])) == ["a/x", "b/deep/scan"]


def test_stdin_lists_paths_relative_to_the_working_directory(corpus, monkeypatch):
    monkeypatch.chdir(corpus)
    stdin = io.StringIO(f"{corpus / 'a/x.pdf'}\nb/x.pdf\n")
    assert names(discover(["-"], stdin)) == ["a/x", "b/x"]


def test_a_file_found_twice_is_one_document(corpus):
    documents = discover([str(corpus), str(corpus / "a" / "x.pdf"), str(corpus / "a" / "*.pdf")])
    assert names(documents).count("a/x") == 1
    assert len(documents) == 4


def test_colliding_names_each_get_a_hash_of_their_path(tmp_path):
    touch(tmp_path / "one" / "x.pdf")
    touch(tmp_path / "two" / "x.pdf")
    touch(tmp_path / "one" / "y.pdf")
    touch(tmp_path / "one" / "y.png")
    documents = discover([str(tmp_path / "one"), str(tmp_path / "two")])
    found = names(documents)
    assert len(set(found)) == 4
    assert [name.split("-")[0] for name in found] == ["x", "y", "y", "x"]
    # The shard key stays the path as found, so that workers mounting the corpus elsewhere agree.
    assert [document.key for document in documents] == ["x.pdf", "y.pdf", "y.png", "x.pdf"]


@pytest.mark.parametrize("spec", ["missing.pdf", "nothing/*.pdf"])
def test_an_input_that_names_nothing_is_an_error(tmp_path, spec):
    with pytest.raises(InputError, match=spec.split("/")[0]):
        discover([str(tmp_path / spec)])


def test_a_list_entry_that_is_missing_is_an_error_naming_its_line(tmp_path):
    listing = tmp_path / "list.txt"
    listing.write_text("gone.pdf\n")
    with pytest.raises(InputError, match=r"line 1: gone\.pdf"):
        discover([str(listing)])


@pytest.mark.parametrize("text", ["1/1", "4/4", "-1/4", "a/4", "3", "1/0"])
def test_a_shard_is_i_of_n_with_i_below_n(text):
    with pytest.raises(ValueError):
        Shard.parse(text)


def test_shards_are_disjoint_and_together_complete_over_a_folder(corpus):
    documents = discover([str(corpus)])
    shards = [select_shard(documents, Shard(index, 3)) for index in range(3)]
    covered = [document for shard in shards for document in shard]
    assert sorted(names(covered)) == sorted(names(documents))


@settings(max_examples=50, deadline=None)
@given(st.sets(st.text(alphabet="abcxyz/._-0123456789", min_size=1, max_size=30), max_size=200), st.integers(1, 9))
def test_every_key_lands_in_exactly_one_shard_whatever_the_order(keys, count):
    documents = [InputDocument(Path(key), PurePosixPath(key), key) for key in keys]
    for ordering in (documents, documents[::-1]):
        shards = [select_shard(ordering, Shard(index, count)) for index in range(count)]
        assert sorted(d.key for shard in shards for d in shard) == sorted(keys)
    # The same hash in every process: not Python's salted hash().
    assert all(0 <= shard_of(key, count) < count for key in keys)


def test_the_shard_of_a_name_is_pinned():
    # sha256 of the name: a worker in another process, on another machine or Python, computes the same
    # (Python's hash() of a str changes with every process).
    assert [shard_of(key, 4) for key in ("a/x.pdf", "b/x.pdf", "page.png", "scans/2024/03/invoice-17.pdf")] == [
        2,
        1,
        1,
        3,
    ]
    assert [shard_of(key, 1000) for key in ("a/x.pdf", "b/x.pdf", "page.png")] == [818, 181, 269]
