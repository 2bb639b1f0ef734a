"""Reading data in its on-disk formats: CIFAR pickle batches, class-folder trees, the packaged digits."""

import numpy as np
import pytest
import torch
from datafiles import write_batch, write_cifar

from vaenas.data import DataError
from vaenas.data.cifar import read_cifar
from vaenas.data.digits import read_digits
from vaenas.data.folder import load_image, scan_split


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_round_trip_of_pixels_and_labels(tmp_path, name):
    written = write_cifar(tmp_path, name)
    for split in ("train", "test"):
        images, labels, classes = read_cifar(tmp_path, name, split)
        assert images.dtype == torch.uint8 and images.shape == written[split][0].shape
        assert labels.dtype == torch.int64
        np.testing.assert_array_equal(images.numpy(), written[split][0])
        np.testing.assert_array_equal(labels.numpy(), written[split][1])
    assert len(classes) == (10 if name == "cifar10" else 100)


def test_cifar_root_may_be_the_batch_folder_itself(cifar10):
    root, written = cifar10
    images, _, _ = read_cifar(root / "cifar-10-batches-py", "cifar10", "train")
    np.testing.assert_array_equal(images.numpy(), written["train"][0])


def test_cifar_class_names_from_meta_file(cifar10):
    root, _ = cifar10
    names = [f"class{i}".encode() for i in range(10)]
    with open(root / "cifar-10-batches-py" / "batches.meta", "wb") as file:
        import pickle

        pickle.dump({b"label_names": names, b"num_vis": 3072}, file, protocol=2)
    assert read_cifar(root, "cifar10", "train")[2] == tuple(n.decode() for n in names)


def test_cifar_missing_folder(tmp_path):
    with pytest.raises(DataError, match="cifar-10-batches-py: missing folder"):
        read_cifar(tmp_path, "cifar10", "train")
    with pytest.raises(DataError, match="missing folder"):
        read_cifar(tmp_path / "nowhere", "cifar10", "train")


def test_cifar_missing_batch_file(cifar10):
    root, _ = cifar10
    (root / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(DataError, match=r"data_batch_3: missing CIFAR batch file"):
        read_cifar(root, "cifar10", "train")


def _rewrite(root, file="data_batch_2", **batch):
    import pickle

    with open(root / "cifar-10-batches-py" / file, "wb") as out:
        pickle.dump(batch, out, protocol=2)


@pytest.mark.parametrize(
    "batch, message",
    [
        ({b"data": np.zeros((4, 3072), np.uint8)}, r"no 'labels' entry"),
        ({b"labels": [0, 1]}, r"no 'data' entry"),
        ({b"data": np.zeros((4, 1024), np.uint8), b"labels": [0] * 4}, r"'data' must be uint8 \[n, 3072\]"),
        ({b"data": np.zeros((4, 3072), np.float32), b"labels": [0] * 4}, r"'data' must be uint8"),
        ({b"data": np.zeros((4, 3072), np.uint8), b"labels": [0] * 3}, r"must be 4 integers"),
        ({b"data": np.zeros((4, 3072), np.uint8), b"labels": [0, 1, 2, 10]}, r"labels outside 0..9"),
    ],
)
def test_cifar_malformed_batch_names_file_and_problem(cifar10, batch, message):
    root, _ = cifar10
    _rewrite(root, **{k.decode(): v for k, v in batch.items()})  # str keys: the reader takes both
    with pytest.raises(DataError, match=r"data_batch_2: malformed CIFAR batch: .*" + message):
        read_cifar(root, "cifar10", "train")


def test_cifar_file_that_is_not_a_pickle_or_holds_code(cifar10):
    root, _ = cifar10
    (root / "cifar-10-batches-py" / "data_batch_1").write_bytes(b"garbage")
    with pytest.raises(DataError, match="data_batch_1: not a CIFAR python batch"):
        read_cifar(root, "cifar10", "train")
    # a pickle that would call a function on load is refused, not run
    import pickle

    (root / "cifar-10-batches-py" / "data_batch_1").write_bytes(pickle.dumps(print))
    with pytest.raises(DataError, match="refusing to load builtins.print"):
        read_cifar(root, "cifar10", "train")


def test_cifar_label_list_of_bytes_keys_with_str_keys_too(tmp_path):
    # files re-pickled under Python 3 have str keys; the originals have bytes keys: both read the same
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    images = np.arange(2 * 3072, dtype=np.int64).astype(np.uint8).reshape(2, 3, 32, 32)
    write_batch(folder / "train", images, np.array([5, 99]), "fine_labels")
    read, labels, _ = read_cifar(tmp_path, "cifar100", "train")
    assert read[1, 2, 31, 31] == images[1, 2, 31, 31] and labels.tolist() == [5, 99]


def test_class_folder_scan(image_tree):
    files = scan_split(image_tree, "train")
    assert files.classes == ("ant", "bee", "cat")
    assert files.labels.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    assert files.path(5) == image_tree / "train" / "bee" / "img_1.JPEG"
    image = load_image(files.path(0))
    assert image.dtype == torch.uint8 and image.ndim == 3 and image.shape[0] == 3


def test_class_folder_validation_uses_training_labels(image_tree):
    import shutil

    shutil.rmtree(image_tree / "val" / "ant")  # val may lack a class; labels stay the training ones
    val = scan_split(image_tree, "val", scan_split(image_tree, "train").classes)
    assert val.labels.tolist() == [1, 1, 2, 2]
    (image_tree / "val" / "dog").mkdir()
    with pytest.raises(DataError, match=r"val/dog: class 'dog' is not among the training split's classes"):
        scan_split(image_tree, "val", ("ant", "bee", "cat"))


def test_class_folder_errors(image_tree):
    with pytest.raises(DataError, match=r"test: missing folder"):
        scan_split(image_tree, "test")
    (image_tree / "train" / "empty").mkdir()
    with pytest.raises(DataError, match=r"train/empty: empty class folder"):
        scan_split(image_tree, "train")
    (image_tree / "train" / "empty").rmdir()
    (image_tree / "train" / "bee" / "notes.txt").write_text("not an image")
    with pytest.raises(DataError, match=r"bee/notes.txt: not an image file"):
        scan_split(image_tree, "train")
    (image_tree / "train" / "bee" / "notes.txt").unlink()
    (image_tree / "train" / "stray.JPEG").write_bytes(b"")
    with pytest.raises(DataError, match=r"train/stray.JPEG: a file directly in"):
        scan_split(image_tree, "train")


def test_undecodable_image_names_the_file(tmp_path):
    path = tmp_path / "broken.JPEG"
    path.write_bytes(b"this is not a JPEG")
    with pytest.raises(DataError, match=r"broken.JPEG: cannot decode image"):
        load_image(path)


def test_image_decode_of_greyscale_bmp(tmp_path):
    from PIL import Image

    grey = np.arange(12 * 10, dtype=np.uint8).reshape(12, 10)
    Image.fromarray(grey).save(tmp_path / "grey.bmp")
    image = load_image(tmp_path / "grey.bmp")
    assert image.shape == (3, 12, 10)
    np.testing.assert_array_equal(image[1].numpy(), grey)


def test_packaged_digits():
    images, labels = read_digits()
    assert images.shape == (1797, 1, 8, 8) and images.dtype == torch.uint8
    assert labels.dtype == torch.int64 and labels.unique().tolist() == list(range(10))
    assert images.max() == 255 and images.min() == 0
    assert torch.bincount(labels).min() >= 170  # about 180 of each digit
