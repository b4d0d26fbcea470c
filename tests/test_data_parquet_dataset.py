import pickle

import numpy as np
import pytest

pytest.importorskip("pyarrow")

from cliplab.data import parquet_dataset  # noqa: E402
from cliplab.data.parquet_dataset import ParquetDataset, parquet_captions, parquet_files  # noqa: E402
from cliplab.data.samples import BadSampleError  # noqa: E402
from cliplab.errors import UserError  # noqa: E402
from data_fixtures import damage_row_group, make_parquet, png_bytes, write_png  # noqa: E402


def first_pixel(sample):
    return np.asarray(sample.image)[0, 0].tolist()


def test_reads_pixels_captions_and_labels_across_files_and_row_groups(tmp_path):
    make_parquet(tmp_path / "set" / "part-0.parquet", 6, label_key="label")
    make_parquet(tmp_path / "set" / "part-1.parquet", 5, first=6, label_key="label")
    dataset = ParquetDataset(tmp_path / "set", label_key="label")
    assert len(dataset) == 11
    assert [dataset.read(i, epoch=0).caption for i in range(11)] == [f"caption {i}" for i in range(11)]
    sample = dataset.read(7, epoch=3)
    assert first_pixel(sample) == [7, 3, 248]
    assert sample.label == 7
    assert sample.source == f"{tmp_path / 'set' / 'part-1.parquet'}:row 1"
    assert ParquetDataset(tmp_path / "set").read(7, epoch=0).label == -1


def test_locations_file_directory_and_glob(tmp_path):
    for name in ("train-1.parquet", "train-0.parquet", "test-0.parquet"):
        make_parquet(tmp_path / "data" / name, 2)
    (tmp_path / "data" / "nested").mkdir()
    make_parquet(tmp_path / "data" / "nested" / "train-2.parquet", 2)
    data = tmp_path / "data"
    assert parquet_files(data / "train-0.parquet") == [data / "train-0.parquet"]
    assert parquet_files(data) == [data / "test-0.parquet", data / "train-0.parquet", data / "train-1.parquet"]
    assert parquet_files(str(data / "train-*.parquet")) == [data / "train-0.parquet", data / "train-1.parquet"]
    assert parquet_files(str(data / "**" / "train-*.parquet")) == [
        data / "nested" / "train-2.parquet", data / "train-0.parquet", data / "train-1.parquet"]
    with pytest.raises(UserError, match="no such file, directory, or files matching it"):
        parquet_files(str(data / "val-*.parquet"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="holds no \\*.parquet files"):
        parquet_files(tmp_path / "empty")


@pytest.mark.parametrize("image_key, caption_key", [("image", "caption"), ("jpg", "text"), ("png", "txt")])
def test_default_columns_are_the_first_that_exist(tmp_path, image_key, caption_key):
    extra = {"url": ["u0", "u1"]}
    if image_key == "jpg":  # both a jpg and a png column: jpg comes first
        extra["png"] = [b"not this one", b"not this one"]
    if caption_key == "text":
        extra["txt"] = ["not this one", "not this one"]
    path = make_parquet(tmp_path / "a.parquet", 2, image_key=image_key, caption_key=caption_key,
                        extra_columns=extra)
    dataset = ParquetDataset(path)
    assert (dataset.columns.image, dataset.columns.caption) == (image_key, caption_key)
    assert dataset.read(1, epoch=0).caption == "caption 1"
    assert first_pixel(dataset.read(1, epoch=0)) == [1, 0, 254]


def test_named_columns_override_the_defaults(tmp_path):
    path = make_parquet(tmp_path / "a.parquet", 3, image_key="picture", caption_key="alt_text",
                        label_key="class_id", extra_columns={"caption": ["x", "y", "z"]})
    dataset = ParquetDataset(path, image_key="picture", caption_key="alt_text", label_key="class_id")
    assert dataset.read(2, epoch=0).caption == "caption 2" and dataset.read(2, epoch=0).label == 2


def test_missing_columns_name_the_file_the_flag_and_the_columns_present(tmp_path):
    path = make_parquet(tmp_path / "a.parquet", 2, image_key="picture", caption_key="alt_text", label_key=None)
    with pytest.raises(UserError, match=r"a.parquet: none of the columns \['image', 'jpg', 'png'\] holds the "
                       r"images; its columns are \['picture', 'alt_text'\]: name the images column with "
                       r"--parquet-image-key \(data.parquet_image_key\)"):
        ParquetDataset(path)
    with pytest.raises(UserError, match=r"no column 'caption' \(data.parquet_caption_key, --parquet-caption-key\)"):
        ParquetDataset(path, image_key="picture", caption_key="caption")
    with pytest.raises(UserError, match=r"no column 'label' \(data.parquet_label_key, --parquet-label-key\)"):
        ParquetDataset(path, image_key="picture", caption_key="alt_text", label_key="label")


def test_wrong_column_types_and_mismatched_files_are_user_errors(tmp_path):
    path = make_parquet(tmp_path / "a.parquet", 2, extra_columns={"image": [1, 2], "caption": [3, 4],
                                                                  "name": ["a", "b"]})
    with pytest.raises(UserError, match="image column 'image' holds int64; expected encoded image bytes"):
        ParquetDataset(path)
    with pytest.raises(UserError, match="caption column 'caption' holds int64; expected strings"):
        ParquetDataset(path, image_key="jpg")
    with pytest.raises(UserError, match="label column 'name' holds string; expected integers"):
        ParquetDataset(path, image_key="jpg", caption_key="txt", label_key="name")
    make_parquet(tmp_path / "set" / "0.parquet", 2)
    make_parquet(tmp_path / "set" / "1.parquet", 2, struct_images=True)
    with pytest.raises(UserError, match=r"1.parquet: column 'jpg' must be binary as in .*0.parquet, found struct"):
        ParquetDataset(tmp_path / "set")
    (tmp_path / "broken.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(UserError, match="broken.parquet: cannot read it as parquet"):
        ParquetDataset(tmp_path / "broken.parquet")


def test_hub_image_structs_with_bytes_or_only_a_path(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    write_png(tmp_path / "from_disk.png", 9)
    images = pa.array([{"bytes": png_bytes(4), "path": "ignored.png"}, {"bytes": None, "path": "from_disk.png"}],
                      type=pa.struct([("bytes", pa.binary()), ("path", pa.string())]))
    pq.write_table(pa.table({"image": images, "text": ["with bytes", "from its path"]}), tmp_path / "hub.parquet")
    dataset = ParquetDataset(tmp_path / "hub.parquet")
    assert dataset.columns.image_is_struct and len(dataset) == 2
    assert first_pixel(dataset.read(0, epoch=0)) == [4, 2, 251]
    assert first_pixel(dataset.read(1, epoch=0)) == [9, 4, 246]  # relative to the parquet file's directory


@pytest.mark.parametrize("struct_images", [False, True])
def test_rows_without_an_image_are_left_out_of_the_index(tmp_path, struct_images):
    # img2dataset writes a row with a null image for every failed download: not a sample
    path = make_parquet(tmp_path / "a.parquet", 12, struct_images=struct_images,
                        bad={1: "null-image", 2: "null-image", 9: "null-image"})
    dataset = ParquetDataset(path)
    kept = [0, 3, 4, 5, 6, 7, 8, 10, 11]
    assert len(dataset) == 9
    assert [dataset.read(i, epoch=0).caption for i in range(9)] == [f"caption {row}" for row in kept]
    assert [dataset.locate(i)[1] for i in range(9)] == kept
    with pytest.raises(UserError, match="no row has an image"):
        ParquetDataset(make_parquet(tmp_path / "b.parquet", 2, bad={0: "null-image", 1: "null-image"}))


def test_row_groups_without_nulls_are_not_read_at_construction(tmp_path, monkeypatch):
    import pyarrow.parquet as pq

    path = make_parquet(tmp_path / "a.parquet", 12, bad={5: "null-image"})  # only row group 1 has a null
    reads = []
    original = pq.ParquetFile.read_row_group
    monkeypatch.setattr(pq.ParquetFile, "read_row_group",
                        lambda self, i, **kwargs: reads.append((i, kwargs["columns"])) or original(self, i, **kwargs))
    dataset = ParquetDataset(path)
    assert reads == [(1, ["jpg"])]
    reads.clear()
    for index in (8, 9, 10, 0, 1, 8):  # groups 2, 2, 2, 0, 0, 2: one read per group while it is cached
        dataset.read(index, epoch=0)
    assert reads == [(2, ["jpg", "txt"]), (0, ["jpg", "txt"])]  # no label column asked for
    monkeypatch.setattr(parquet_dataset, "ROW_GROUP_CACHE_BYTES", 1)  # room for the newest group only
    dataset = ParquetDataset(path)
    reads.clear()
    for index in (8, 9, 0, 1, 8):
        dataset.read(index, epoch=0)
    assert [group for group, _ in reads] == [2, 0, 2]  # group 2 was evicted by group 0


@pytest.mark.parametrize("kind, reason", [("garbage", "cannot decode image"), ("empty-caption", "empty caption"),
                                          ("null-caption", "empty caption")])
def test_bad_samples_raise_bad_sample_error_naming_file_and_row(tmp_path, kind, reason):
    path = make_parquet(tmp_path / "a.parquet", 6, bad={5: kind})
    dataset = ParquetDataset(path)
    with pytest.raises(BadSampleError, match=reason) as caught:
        dataset.read(5, epoch=0)
    assert caught.value.source == f"{path}:row 5"
    assert dataset.read(4, epoch=0).caption == "caption 4"


def test_a_pickled_copy_reads_the_same_samples(tmp_path):
    dataset = ParquetDataset(make_parquet(tmp_path / "a.parquet", 10, bad={3: "null-image"}))
    dataset.read(0, epoch=0)  # opens a file and caches a row group, which must not travel
    copy = pickle.loads(pickle.dumps(dataset))
    for index in range(len(dataset)):
        assert copy.read(index, epoch=0).caption == dataset.read(index, epoch=0).caption
        assert first_pixel(copy.read(index, epoch=0)) == first_pixel(dataset.read(index, epoch=0))


def test_captions_read_the_caption_column_only(tmp_path):
    make_parquet(tmp_path / "set" / "0.parquet", 5, bad={1: "null-caption", 2: "empty-caption"})
    make_parquet(tmp_path / "set" / "1.parquet", 2, first=5)
    assert list(parquet_captions(tmp_path / "set")) == ["caption 0", "caption 3", "caption 4", "caption 5",
                                                        "caption 6"]


def test_a_list_column_gives_one_caption_per_epoch_and_all_for_evaluation(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from cliplab.data.caption_lists import drawn_caption

    lists = [["a", "b"], ["c"], [], ["d", "e", "f"]]
    table = pa.table({"jpg": pa.array([png_bytes(index) for index in range(4)], pa.binary()),
                      "caption": pa.array(lists, pa.list_(pa.string()))})
    pq.write_table(table, tmp_path / "lists.parquet", row_group_size=2)
    dataset = ParquetDataset(tmp_path / "lists.parquet", caption_seed=2)
    assert dataset.read(3, epoch=4).captions == ("d", "e", "f")
    assert dataset.read(3, epoch=4).caption == drawn_caption(("d", "e", "f"), seed=2, epoch=4, key=3)
    assert dataset.read(1, epoch=0).caption == "c"
    with pytest.raises(BadSampleError, match="lists.parquet:row 2: the list of captions is empty"):
        dataset.read(2, epoch=0)
    assert list(parquet_captions(tmp_path / "lists.parquet")) == ["a", "b", "c", "d", "e", "f"]


def test_a_caption_column_of_other_lists_is_refused(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"jpg": pa.array([png_bytes(0)], pa.binary()),
                             "caption": pa.array([[1, 2]], pa.list_(pa.int64()))}), tmp_path / "ints.parquet")
    with pytest.raises(UserError, match=r"caption column 'caption' holds list<element: int64>; expected strings or "
                                        r"lists of strings"):
        ParquetDataset(tmp_path / "ints.parquet")


def test_a_row_group_that_cannot_be_read_makes_its_rows_bad_samples_and_the_rest_reads(tmp_path):
    # Before: OSError "Couldn't deserialize thrift" from pyarrow, through the loader: a 91-line traceback.
    path = damage_row_group(make_parquet(tmp_path / "a.parquet", 12, row_group_size=4), 1)
    dataset = ParquetDataset(path)
    assert len(dataset) == 12
    assert [dataset.read(i, epoch=0).caption for i in (0, 3, 8, 11)] == ["caption 0", "caption 3", "caption 8",
                                                                       "caption 11"]
    for row in range(4, 8):
        with pytest.raises(BadSampleError) as raised:
            dataset.read(row, epoch=0)
        assert str(raised.value).startswith(f"{path}:row {row}: row group 1 of the file cannot be read (Couldn't "
                                            "deserialize thrift")
        assert "\n" not in str(raised.value)
    assert list(parquet_captions(path)) == [f"caption {i}" for i in (0, 1, 2, 3, 8, 9, 10, 11)]


def test_a_row_group_unreadable_at_construction_keeps_its_rows_as_bad_samples(tmp_path):
    """A group with null images has its image column read when the index is built; damaged, its rows
    all stay in the index (which hold images is unknown) and fail when drawn."""
    path = damage_row_group(make_parquet(tmp_path / "a.parquet", 8, row_group_size=4, bad={5: "null-image"}), 1)
    dataset = ParquetDataset(path)
    assert len(dataset) == 8
    with pytest.raises(BadSampleError, match="row group 1 of the file cannot be read"):
        dataset.read(5, epoch=0)
