"""Evaluation protocols on frozen or fine-tuned encoders: linear, kNN, fine-tuning, transfer."""

from tribyol.eval.features import FeatureCache, extract_features, weights_hash
from tribyol.eval.knn import knn_predict
from tribyol.eval.linear import LinearResult, linear_probe
from tribyol.eval.splits import label_subset, stratified_sample, stratified_split

__all__ = [
    "FeatureCache",
    "LinearResult",
    "extract_features",
    "knn_predict",
    "label_subset",
    "linear_probe",
    "stratified_sample",
    "stratified_split",
    "weights_hash",
]
