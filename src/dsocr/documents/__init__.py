"""Documents: PDFs, multi-page TIFFs and images in, pages out.

Pages are rendered (PDFium, in worker processes) and each is OCR'd as one
image request; the model's grounding output is parsed into typed layout blocks
with boxes in the page's pixels.
"""
