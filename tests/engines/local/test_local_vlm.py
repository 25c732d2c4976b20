"""The transformers engine on a tiny, randomly initialised Qwen2-VL built here (nothing downloaded)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from ocr_assets.core import PageFailure, PageSuccess
from ocr_assets.engines.local.runner import LocalInference
from ocr_assets.engines.local.vlm_engine import QWEN2_VL_CHAT_TEMPLATE, ModelLoadError, TransformersVlmBackend
from ocr_assets.schema import ErrorClass, OcrPageResult, PageInfo, RawOcr
from tests.engines.local.local_helpers import make_request

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                  "<|image_pad|>", "<|video_pad|>"]


def build_tiny_qwen2_vl(directory: Path) -> Path:
    """Save a ~200k-parameter Qwen2-VL with a byte-level BPE tokenizer and a PIL image processor."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen2VLConfig, Qwen2VLForConditionalGeneration
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    bpe.train_from_iterator(['{"raw_ocr": {"text_blocks": []}, "page_info": {}} Read the page user assistant'] * 4,
                            trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                        chat_template=QWEN2_VL_CHAT_TEMPLATE)
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in SPECIAL_TOKENS}
    config = Qwen2VLConfig(
        text_config={
            "vocab_size": len(tokenizer), "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
            "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 2048,
            "rope_parameters": {"rope_type": "default", "mrope_section": [1, 1, 2], "rope_theta": 10000.0},
            "bos_token_id": ids["<|endoftext|>"], "eos_token_id": ids["<|im_end|>"], "pad_token_id": ids["<|endoftext|>"],
        },
        vision_config={"depth": 1, "embed_dim": 16, "hidden_size": 32, "num_heads": 2, "mlp_ratio": 2,
                       "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2},
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
    )
    torch.manual_seed(0)
    Qwen2VLForConditionalGeneration(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    # Few image tokens per page keeps generation on a CPU fast.
    Qwen2VLImageProcessorPil(min_pixels=28 * 28 * 4, max_pixels=28 * 28 * 8).save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_qwen2_vl(tmp_path_factory.mktemp("tiny-qwen2-vl"))


@pytest.fixture
def page_requests(tmp_path: Path):
    requests = []
    for index, size in enumerate([(300, 420), (420, 300), (200, 200)]):
        path = tmp_path / f"{index}.png"
        Image.new("RGB", size, (230, 225, 200)).save(path)
        requests.append(make_request(f"CA:tiny:1900:{index}", path, page=index, prompt=f"Read page {index}."))
    return requests


def test_the_tiny_model_loads_batches_and_generates_and_garbage_is_a_parse_failure(
    tiny_model: Path, page_requests, monkeypatch: pytest.MonkeyPatch
) -> None:
    from transformers import Qwen2VLForConditionalGeneration

    calls: list[dict] = []
    real_generate = Qwen2VLForConditionalGeneration.generate

    def spy(self, *args, **kwargs):
        calls.append({"batch": kwargs["input_ids"].shape[0], "images": int(kwargs["image_grid_thw"].shape[0]),
                      "max_new_tokens": kwargs["max_new_tokens"]})
        return real_generate(self, *args, **kwargs)

    monkeypatch.setattr(Qwen2VLForConditionalGeneration, "generate", spy)
    engine = LocalInference(engine="transformers", model_dir=tiny_model, device="cpu", batch_size=2,
                            max_new_tokens=6)
    outcomes = engine.infer(page_requests)
    assert calls == [{"batch": 2, "images": 2, "max_new_tokens": 6}, {"batch": 1, "images": 1, "max_new_tokens": 6}]
    assert [o.key for o in outcomes] == [r.key for r in page_requests]
    for outcome in outcomes:
        assert isinstance(outcome, PageFailure)
        assert outcome.error_type in {"malformed_json", "truncated", "empty", "schema"}
        assert outcome.error_class == ErrorClass.RETRYABLE
        assert outcome.model == tiny_model.name
        assert outcome.raw_response is not None and outcome.traceback
    assert engine.model_name == tiny_model.name


def test_answers_are_parsed_and_classified(tiny_model: Path, page_requests) -> None:
    backend = TransformersVlmBackend(tiny_model, "cpu", max_new_tokens=8)
    good = OcrPageResult(raw_ocr=RawOcr(), page_info=PageInfo(page_number=1)).model_dump_json()
    answers = iter([[(f"```json\n{good}\n```", False), ('{"raw_ocr": {"text_', True), ("[1, 2]", False)]])
    backend.generate = lambda pages: next(answers)
    from ocr_assets.engines.local.prefetch import prepare_page

    ok, truncated, wrong = backend.run_batch([prepare_page(r, 500) for r in page_requests])
    assert isinstance(ok, PageSuccess) and ok.result.page_info.page_number == 1
    assert (truncated.error_type, truncated.error_class) == ("truncated", ErrorClass.RETRYABLE)
    assert (wrong.error_type, wrong.error_class) == ("schema", ErrorClass.RETRYABLE)


def test_a_missing_model_directory_fails_at_load_not_per_page(tmp_path: Path, page_requests) -> None:
    engine = LocalInference(engine="transformers", model_dir=tmp_path / "nowhere", device="cpu")
    with pytest.raises(ModelLoadError, match="never downloaded"):
        engine.infer(page_requests)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_the_tiny_model_generates_on_a_gpu(tiny_model: Path, page_requests) -> None:
    engine = LocalInference(engine="transformers", model_dir=tiny_model, device="auto", batch_size=4,
                            max_new_tokens=6)
    outcomes = engine.infer(page_requests)
    assert engine.devices()[0].startswith("cuda:")
    assert len(outcomes) == 3 and all(isinstance(o, PageFailure) for o in outcomes)
