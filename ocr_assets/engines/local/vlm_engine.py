"""A transformers vision-language engine (Qwen2-VL family) loaded from a local model directory.

The page prompt (already rendered by the prompt registry) and the image go through the model's
chat template; the answer is parsed with `parse_page_result`. Nothing is downloaded: loading uses
`local_files_only=True`, so a missing file fails at load time, not mid-run.
"""

from __future__ import annotations

import time
from pathlib import Path

from ocr_assets.core import PageOutcome, PageSuccess
from ocr_assets.engines.local.backend import page_failure
from ocr_assets.engines.local.batching import SafeRange
from ocr_assets.engines.local.prefetch import PreparedPage
from ocr_assets.schema import ErrorClass, OutputParseError, parse_page_result

IMAGE_TOKEN = "<|image_pad|>"
# Qwen2-VL's chat format, used when the model directory ships no chat template of its own.
QWEN2_VL_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for part in message['content'] %}{% if part['type'] == 'image' %}"
    "<|vision_start|><|image_pad|><|vision_end|>{% else %}{{ part['text'] }}{% endif %}{% endfor %}"
    "{% endif %}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
# A bad answer may be a sampling accident worth another attempt; an oversized one will not shrink.
PARSE_ERROR_CLASS = {
    "empty": ErrorClass.RETRYABLE,
    "malformed_json": ErrorClass.RETRYABLE,
    "schema": ErrorClass.RETRYABLE,
    "truncated": ErrorClass.RETRYABLE,
    "oversized": ErrorClass.FATAL,
}


class ModelLoadError(RuntimeError):
    """The model directory is missing, incomplete, or not a supported vision-language model."""


class TransformersVlmBackend:
    """A Qwen2-VL model on one device; `run_batch` generates for a whole batch at once."""

    safe_range = SafeRange(1, 16)
    # Image tokens plus the KV cache of a long JSON answer on a ~2B model, in bf16.
    per_item_bytes = 2 * 2**30

    def __init__(self, model_dir: Path, device: str, *, max_new_tokens: int = 4096):
        import torch
        from transformers import AutoImageProcessor, AutoTokenizer, Qwen2VLForConditionalGeneration

        model_dir = Path(model_dir)
        if not (model_dir / "config.json").is_file():
            raise ModelLoadError(f"no model at {model_dir} (config.json missing); local models are never downloaded")
        self.model = model_dir.name
        self.device = device
        self.max_new_tokens = max_new_tokens
        try:
            # Tokenizer and image processor load separately: `AutoProcessor` for Qwen2-VL also
            # builds a video processor, which needs torchvision even for images only.
            self.tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
            self.image_processor = AutoImageProcessor.from_pretrained(model_dir, local_files_only=True)
            dtype = torch.bfloat16 if device.startswith("cuda") and torch.cuda.is_bf16_supported() else torch.float32
            self.network = Qwen2VLForConditionalGeneration.from_pretrained(
                model_dir, local_files_only=True, dtype=dtype
            ).to(device).eval()
        except (OSError, ValueError, KeyError) as exc:
            raise ModelLoadError(f"cannot load a Qwen2-VL model from {model_dir}: {exc}") from exc
        # Left padding keeps every prompt's end next to its generated tokens in a batch.
        self.tokenizer.padding_side = "left"
        self.chat_template = self.tokenizer.chat_template or QWEN2_VL_CHAT_TEMPLATE
        self.merge_size = int(self.image_processor.merge_size)
        self._prompt("probe", 1)  # a template that cannot place the image fails here, not per page
        self.eos_ids = {
            i for i in (self.tokenizer.eos_token_id, self.network.generation_config.eos_token_id) if i is not None
        }

    def _prompt(self, text: str, image_tokens: int) -> str:
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]}]
        rendered = self.tokenizer.apply_chat_template(
            messages, chat_template=self.chat_template, tokenize=False, add_generation_prompt=True
        )
        if rendered.count(IMAGE_TOKEN) != 1:
            raise ModelLoadError(f"the chat template of {self.model} does not place exactly one image token")
        # The processor's job, done here: one placeholder per merged vision patch.
        return rendered.replace(IMAGE_TOKEN, IMAGE_TOKEN * image_tokens)

    def generate(self, pages: list[PreparedPage]) -> list[tuple[str, bool]]:
        """Generated text per page and whether it stopped at the token limit (truncated)."""
        import torch

        vision = self.image_processor(images=[p.image for p in pages], return_tensors="pt")
        grids = vision["image_grid_thw"]
        texts = [
            self._prompt(page.request.prompt, int(grid.prod()) // self.merge_size**2)
            for page, grid in zip(pages, grids, strict=True)
        ]
        encoded = self.tokenizer(texts, return_tensors="pt", padding=True)
        inputs = {**encoded, **vision}
        inputs = {name: value.to(self.device) for name, value in inputs.items()}
        with torch.inference_mode():
            output = self.network.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False)
        generated = output[:, encoded["input_ids"].shape[1] :].cpu()
        answers = []
        for row in generated:
            tokens = row.tolist()
            stopped = any(token in self.eos_ids for token in tokens)
            truncated = not stopped and len(tokens) >= self.max_new_tokens
            answers.append((self.tokenizer.decode(row, skip_special_tokens=True), truncated))
        return answers

    def run_batch(self, pages: list[PreparedPage]) -> list[PageOutcome]:
        """Generate for the batch in one call and parse each answer; CUDA OOM propagates for back-off."""
        started = time.perf_counter()
        answers = self.generate(pages)
        latency = (time.perf_counter() - started) / len(pages)
        outcomes: list[PageOutcome] = []
        for page, (text, truncated) in zip(pages, answers, strict=True):
            key = page.request.key
            try:
                result = parse_page_result(text)
            except OutputParseError as exc:
                kind = "truncated" if truncated and exc.kind in ("malformed_json", "schema") else exc.kind
                outcomes.append(page_failure(key, PARSE_ERROR_CLASS.get(kind, ErrorClass.RETRYABLE), kind, exc,
                                             model=self.model, raw_response=text, latency_s=latency))
                continue
            outcomes.append(PageSuccess(key=key, result=result, raw_response=text, model=self.model, latency_s=latency))
        return outcomes
