"""Batch OCR from the command line (`dsocr ocr`, `dsocr run-batch`), as a client of the running service.

inputs.py     INPUT arguments -> documents, each with its name under OUT_DIR; --shard I/N
client.py     the HTTP client: the API key, retries with backoff on 429/503 and lost connections
documents.py  a document's pages -> requests of a few pages, their responses merged back in order
scheduler.py  which document sends pages next: pages in flight bounded, documents served in turn
outputs.py    NAME.md, NAME.json, figures, errors.jsonl; atomic writes; what a rerun skips
layout.py     pictures of the pages with the blocks' boxes drawn (--layout)
ocr_run.py    `dsocr ocr`: survey, dispatch, write, Ctrl-C
run_batch.py  `dsocr run-batch`: the batch-file format of OpenAI, vLLM and Mistral
progress.py   a progress bar on a terminal, periodic lines elsewhere; the summary
local_stack.py  --serve: the local stack for the length of a run
"""
