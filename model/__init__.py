"""The sensor classifier's model: a numpy MLP, its training parts and its safe `.npz` artifact."""

from model.artifact import FORMAT_VERSION, ArtifactError, load
from model.calibration import (
    MAX_TEMPERATURE,
    MIN_TEMPERATURE,
    brier_score,
    expected_calibration_error,
    fit_temperature,
    log_loss,
    log_softmax,
    reliability_bins,
    softmax,
)
from model.classifier import MAX_CLASSES, MAX_COST, Classifier, check_costs, default_costs
from model.drift import PSI_EPSILON, DriftReference, psi
from model.network import MLP
from model.normalization import Standardizer
from model.novelty import ClassMahalanobis
from model.optimizers import SGD, Adam

__all__ = [
    "FORMAT_VERSION",
    "MAX_CLASSES",
    "MAX_COST",
    "MAX_TEMPERATURE",
    "MIN_TEMPERATURE",
    "MLP",
    "PSI_EPSILON",
    "SGD",
    "Adam",
    "ArtifactError",
    "ClassMahalanobis",
    "Classifier",
    "DriftReference",
    "Standardizer",
    "brier_score",
    "check_costs",
    "default_costs",
    "expected_calibration_error",
    "fit_temperature",
    "load",
    "log_loss",
    "log_softmax",
    "psi",
    "reliability_bins",
    "softmax",
]
