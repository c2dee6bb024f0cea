"""DeepSeek's prompt presets: the instruction that follows the image ("<image>\\n<instruction>").

From DeepSeek-OCR's README. `<|grounding|>` asks for the layout too: each
block is tagged `<|ref|>label<|/ref|><|det|>[[x1, y1, x2, y2]]<|/det|>`, with
coordinates scaled to 0-999 of the image's width and height.
"""

PRESETS = {
    "document": "<|grounding|>Convert the document to markdown.",  # a document page, with its layout
    "ocr": "<|grounding|>OCR this image.",  # any other image, with the text's boxes
    "free_ocr": "Free OCR.",  # text only, no layout
    "figure": "Parse the figure.",  # a chart or figure inside a document
    "describe": "Describe this image in detail.",
    "locate": "Locate <|ref|>{text}<|/ref|> in the image.",  # boxes of the given text
}
DEFAULT = PRESETS["document"]
