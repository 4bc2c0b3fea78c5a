"""Sample-quality evaluation: a dataset-trained classifier, FID in its feature space, conditional
accuracy, diversity, the real-data floor, and guidance sweeps (``ddpm eval``)."""
from ddpm.evaluation.classifier import (ClassifierCache, EvalClassifier, classifier_path, get_classifier, load_classifier,
                                        save_classifier, train_classifier)
from ddpm.evaluation.guidance import ROW_KEYS, best_row, evaluate_guidance, generate, quick_metric
from ddpm.evaluation.metrics import (conditional_accuracy, diversity_score, fid_to_test, frechet_distance,
                                     image_metrics, real_floor, reference_stats)

__all__ = ["ClassifierCache", "EvalClassifier", "ROW_KEYS", "best_row", "classifier_path", "conditional_accuracy",
           "diversity_score", "evaluate_guidance", "fid_to_test", "frechet_distance", "generate",
           "get_classifier", "image_metrics", "load_classifier", "quick_metric", "real_floor",
           "reference_stats", "save_classifier", "train_classifier"]
