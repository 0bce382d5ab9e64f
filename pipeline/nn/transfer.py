"""Fine-tuning a network: another one's weights up to the classifier, frozen parts, and a
lower rate for everything but the classifier.

Layers are matched by name, which is their position (pipeline/nn/resnet.py names every
layer by stage and block), and must hold weights of the same shapes: two networks whose
backbones differ in block type, depth or width never exchange weights silently.
"""

import keras

from pipeline.errors import UserError

# The classifier: made new for the new data set's classes.
CLASSIFIER = "head_dense"
# The input normalisation: the data set's statistics, not learned weights.
NORMALIZATION = ("normalize", "subtract_mean_image")


def backbone_layers(model: keras.Model) -> dict:
    """The layers with weights up to the classifier, by name."""
    skipped = (CLASSIFIER, *NORMALIZATION)
    return {
        layer.name: layer for layer in model.layers if layer.weights and layer.name not in skipped
    }


def copy_backbone(source: keras.Model, target: keras.Model, source_label: str) -> int:
    """Give `target` the weights of `source` (described as `source_label` in errors) in
    every layer up to the classifier; returns how many layers were copied. A one-line
    UserError names both networks and the first layer that differs."""
    theirs, ours = backbone_layers(source), backbone_layers(target)
    differs = f"{source_label} holds a {source.name} network that does not fit this {target.name}"
    for name, layer in ours.items():
        other = theirs.get(name)
        if other is None:
            raise UserError(f"{differs}: it has no layer {name} (another depth or block type)")
        expected, found = _shapes(layer), _shapes(other)
        if expected != found:
            raise UserError(f"{differs}: layer {name} holds {found} there, {expected} here")
    extra = sorted(set(theirs) - set(ours))
    if extra:
        raise UserError(f"{differs}: it has layers this one lacks, {extra[0]} the first")
    for name, layer in ours.items():
        layer.set_weights(theirs[name].get_weights())
    return len(ours)


def _shapes(layer) -> list[tuple]:
    return [tuple(weight.shape) for weight in layer.weights]


def freeze(model: keras.Model, parts) -> list[str]:
    """Stop the layers of `parts` ("stem", "stage1", ... or "backbone") from training;
    returns the frozen layers' names. A frozen BatchNormalization also keeps its moving
    statistics (Keras runs it in inference mode)."""
    stages = {name.split("_")[0] for name in backbone_layers(model) if name.startswith("stage")}
    for part in parts:
        if part not in ("stem", "backbone") and part not in stages:
            raise UserError(
                f"fine_tune.freeze names {part}, but {model.name} has stem and "
                f"{', '.join(sorted(stages))}"
            )
    frozen = []
    for layer in model.layers:
        if layer.weights and _in_parts(layer.name, parts):
            layer.trainable = False
            frozen.append(layer.name)
    return frozen


def _in_parts(name: str, parts) -> bool:
    if name == CLASSIFIER or name in NORMALIZATION:
        return False
    return "backbone" in parts or name.split("_")[0] in parts


def with_backbone_rate(optimizer_class):
    """`optimizer_class` taking `backbone_rate_scale`: every variable but the classifier's
    trains at that share of the rate (registered, so that checkpoints load)."""
    return BACKBONE_RATE_OPTIMIZERS[f"{optimizer_class.__name__}BackboneRate"]


class _BackboneRate:
    """Scales the rate of every variable outside the classifier by backbone_rate_scale.

    Keras' optimizers update each variable in update_step(gradient, variable, rate), on
    every backend: the scale applies there, so that SGD's momentum and Adam's moments
    work as they do with a lower rate (scaling the gradient instead would be undone by
    Adam's normalisation)."""

    def __init__(self, *args, backbone_rate_scale: float = 1.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.backbone_rate_scale = backbone_rate_scale
        self._classifier_indices = frozenset()

    def build(self, variables):
        # update_step gets the backend's variable (TensorFlow's has no Keras path): the
        # classifier's variables are known here by their index.
        super().build(variables)
        self._classifier_indices = frozenset(
            index
            for index, variable in enumerate(variables)
            if variable.path.startswith(f"{CLASSIFIER}/")
        )

    def update_step(self, gradient, variable, learning_rate):
        if self._get_variable_index(variable) not in self._classifier_indices:
            learning_rate = learning_rate * self.backbone_rate_scale
        return super().update_step(gradient, variable, learning_rate)

    def get_config(self):
        return {**super().get_config(), "backbone_rate_scale": self.backbone_rate_scale}


def _with_backbone_rate(base):
    name = f"{base.__name__}BackboneRate"
    made = type(name, (_BackboneRate, base), {"__doc__": _BackboneRate.__doc__})
    return keras.saving.register_keras_serializable(package="pipeline")(made)


# The optimisers of training.optimizer, with a backbone rate; load_model knows them.
BACKBONE_RATE_OPTIMIZERS = {
    made.__name__: made
    for made in map(
        _with_backbone_rate,
        (keras.optimizers.SGD, keras.optimizers.Adam, keras.optimizers.AdamW),
    )
}
