"""The reference Keras project's data loading, rebuilt as the baseline for bench/loader.py.

Faithful to its structure: an HDF5 generator that yields sequential slices
(never shuffled), runs per-image Python preprocessors (mean subtraction with
cv2.split/merge, img_to_array), one-hot encodes the labels, and augments
through Keras' legacy ImageDataGenerator.flow. It is not part of the
pipeline; it exists only to be measured against.
"""

import cv2
import h5py
import numpy as np
from keras.src.legacy.preprocessing.image import ImageDataGenerator
from keras.utils import img_to_array, to_categorical


class MeanPreprocessor:
    def __init__(self, r_mean, g_mean, b_mean):
        self.r_mean, self.g_mean, self.b_mean = r_mean, g_mean, b_mean

    def preprocess(self, image):
        (blue, green, red) = cv2.split(image.astype("float32"))
        red -= self.r_mean
        green -= self.g_mean
        blue -= self.b_mean
        return cv2.merge([blue, green, red])


class ImageToArrayPreprocessor:
    def preprocess(self, image):
        return img_to_array(image)


class ReferenceHDF5DatasetGenerator:
    def __init__(self, db_path, batch_size, preprocessors=None, aug=None, classes=10):
        self.batch_size = batch_size
        self.preprocessors = preprocessors
        self.aug = aug
        self.classes = classes
        self.db = h5py.File(db_path, "r")
        self.num_images = self.db["labels"].shape[0]

    def generator(self, passes=np.inf):
        epochs = 0
        while epochs < passes:
            for start in np.arange(0, self.num_images, self.batch_size):
                images = self.db["images"][start : start + self.batch_size]
                labels = self.db["labels"][start : start + self.batch_size]
                labels = to_categorical(labels, self.classes)
                if self.preprocessors is not None:
                    processed = []
                    for image in images:
                        for preprocessor in self.preprocessors:
                            image = preprocessor.preprocess(image)
                        processed.append(image)
                    images = np.array(processed)
                if self.aug is not None:
                    (images, labels) = next(
                        self.aug.flow(images, labels, batch_size=self.batch_size)
                    )
                yield images, labels
            epochs += 1

    def close(self):
        self.db.close()


def cifar_augmentation():
    """The reference CIFAR-10 training augmentation (shift 0.1 each way, flip)."""
    return ImageDataGenerator(
        width_shift_range=0.1, height_shift_range=0.1, horizontal_flip=True, fill_mode="nearest"
    )


def tiny_imagenet_augmentation():
    """The reference Tiny ImageNet training augmentation."""
    return ImageDataGenerator(
        rotation_range=18,
        zoom_range=0.15,
        width_shift_range=0.2,
        height_shift_range=0.2,
        shear_range=0.15,
        horizontal_flip=True,
        fill_mode="nearest",
    )
