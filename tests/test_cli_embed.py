import csv
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from cliplab.model_io import load
from eval_fixtures import EMBED_DIM, NUM_TEST_IMAGES, run_cli, trained_run  # noqa: F401  (session fixture)


def _ids(path):
    """The rows of an ids file, as csv.DictReader reads them (absent values are empty strings)."""
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def test_ids_files_quote_texts_holding_tabs_and_quotes(tmp_path):
    from cliplab.eval.embedding_files import EmbeddedItems, write_npy

    item = EmbeddedItems("text", np.zeros((2, 3), dtype=np.float32), paths=(None, None), lines=(4, 9),
                         texts=('tab\there', 'a "quoted" word'))
    assert write_npy([item], tmp_path / "t.npy") == [tmp_path / "t.npy", tmp_path / "t.ids.tsv"]
    assert [row["text"] for row in _ids(tmp_path / "t.ids.tsv")] == ['tab\there', 'a "quoted" word']


def _direct_image_embeddings(bundle, paths):
    model, preprocess, _ = load(bundle)
    with torch.no_grad():
        return model.encode_image(torch.stack([preprocess(Image.open(p).convert("RGB")) for p in paths]),
                                  normalize=True).numpy()


def test_image_directory_to_npy(trained_run, tmp_path, capsys):
    out = tmp_path / "images.npy"
    assert run_cli(["embed", trained_run.bundle, "--images", trained_run.images_dir, "--batch-size", 7,
                    "--out", out]) == 0
    captured = capsys.readouterr()  # not a terminal: plain progress lines, no bar
    assert f"images: {NUM_TEST_IMAGES}/{NUM_TEST_IMAGES} img (100%)" in captured.out
    assert "\r" not in captured.out + captured.err
    embeddings = np.load(out)
    paths = sorted(trained_run.image_paths)  # directory listing order: sorted paths
    assert embeddings.shape == (NUM_TEST_IMAGES, EMBED_DIM) and embeddings.dtype == np.float32
    assert _ids(tmp_path / "images.ids.tsv") == [{"id": str(row), "path": str(path), "line": "", "text": ""}
                                                 for row, path in enumerate(paths)]
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(embeddings, _direct_image_embeddings(trained_run.bundle, paths), atol=1e-5)


def test_decoding_workers_keep_the_order_and_bf16_stays_close(trained_run, tmp_path):
    runs = {"workers0": ["--workers", "0"], "workers2": ["--workers", "2"],
            "bf16": ["--workers", "0", "--precision", "bf16"]}
    embeddings = {}
    for name, flags in runs.items():
        out = tmp_path / f"{name}.npy"
        assert run_cli(["embed", trained_run.bundle, "--images", trained_run.images_dir, "--batch-size", 7,
                        "--out", out, *flags]) == 0
        embeddings[name] = np.load(out)
    assert np.array_equal(embeddings["workers2"], embeddings["workers0"])
    # bf16 autocast keeps 8 mantissa bits: unit rows within a cosine of 0.99 of the fp32 ones.
    assert embeddings["bf16"].dtype == np.float32
    assert (embeddings["bf16"] * embeddings["workers0"]).sum(axis=1).min() > 0.99


def test_manifest_and_texts_to_npy_pair_and_parquet(trained_run, tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")  # the `parquet` extra
    manifest = tmp_path / "m.csv"
    chosen = trained_run.image_paths[:5]
    manifest.write_text("filepath,title\n" + "".join(f"{path},caption {index}\n" for index, path in enumerate(chosen)))
    texts = tmp_path / "texts.txt"
    texts.write_text("a photo of the bag.\n\na photo of the sandal.\n")  # lines 1 and 3
    out = tmp_path / "emb.npy"
    assert run_cli(["embed", trained_run.run_dir, "--images", manifest, "--csv-separator", ",", "--texts", texts,
                    "--out", out, "--parquet"]) == 0
    image_embeddings = np.load(tmp_path / "emb.images.npy")
    text_embeddings = np.load(tmp_path / "emb.texts.npy")
    assert image_embeddings.shape == (5, EMBED_DIM) and text_embeddings.shape == (2, EMBED_DIM)
    np.testing.assert_allclose(image_embeddings, _direct_image_embeddings(trained_run.bundle, chosen), atol=1e-5)
    model, _, tokenizer = load(trained_run.bundle)
    with torch.no_grad():
        expected_texts = model.encode_text(tokenizer(["a photo of the bag.", "a photo of the sandal."]),
                                           normalize=True).numpy()
    np.testing.assert_allclose(text_embeddings, expected_texts, atol=1e-5)

    assert _ids(tmp_path / "emb.images.ids.tsv") == [
        {"id": str(row), "path": str(path.resolve()), "line": str(row + 2), "text": f"caption {row}"}
        for row, path in enumerate(chosen)]
    assert _ids(tmp_path / "emb.texts.ids.tsv") == [
        {"id": "0", "path": "", "line": "1", "text": "a photo of the bag."},
        {"id": "1", "path": "", "line": "3", "text": "a photo of the sandal."}]

    table = pq.read_table(tmp_path / "emb.parquet").to_pydict()
    assert table["modality"] == ["image"] * 5 + ["text"] * 2
    assert table["id"] == [0, 1, 2, 3, 4, 0, 1]
    assert table["line"] == [2, 3, 4, 5, 6, 1, 3]
    assert table["path"][:5] == [str(path.resolve()) for path in chosen] and table["path"][5:] == [None, None]
    assert table["text"] == [f"caption {index}" for index in range(5)] + ["a photo of the bag.", "a photo of the sandal."]
    np.testing.assert_allclose(np.array(table["embedding"][:5]), image_embeddings, atol=0)
    np.testing.assert_allclose(np.array(table["embedding"][5:]), text_embeddings, atol=0)


def test_parquet_output_alone(trained_run, tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    texts = tmp_path / "texts.txt"
    texts.write_text("a photo of the coat.\n")
    out = tmp_path / "only.parquet"
    assert run_cli(["embed", trained_run.bundle, "--texts", texts, "--out", out]) == 0
    table = pq.read_table(out)
    assert table.num_rows == 1 and table.column_names == ["modality", "id", "path", "line", "text", "embedding"]
    assert not (tmp_path / "only.npy").exists()


def test_parquet_without_pyarrow_is_a_user_error_naming_the_extra(trained_run, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow now raises ImportError
    texts = tmp_path / "texts.txt"
    texts.write_text("a photo of the coat.\n")
    assert run_cli(["embed", trained_run.bundle, "--texts", texts, "--out", tmp_path / "only.parquet"]) == 2
    assert "writing Parquet needs pyarrow: pip install 'cliplab[parquet]'" in capsys.readouterr().err


@pytest.mark.parametrize("arguments, message", [
    (["--out", "x.npy"], "nothing to embed"),
    (["--texts", "TEXTS", "--out", "x.txt"], "must end with .npy or .parquet"),
    (["--images", "missing_dir", "--out", "x.npy"], "missing_dir does not exist"),
    (["--texts", "missing.txt", "--out", "x.npy"], "--texts: file missing.txt does not exist"),
    (["--texts", "TEXTS", "--out", "x.npy", "--workers", "-1"], "--workers must be >= 0, got -1"),
])
def test_bad_embed_arguments(trained_run, tmp_path, capsys, monkeypatch, arguments, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "TEXTS").write_text("hello\n")
    assert run_cli(["embed", trained_run.bundle, *arguments]) == 2
    assert message in capsys.readouterr().err
