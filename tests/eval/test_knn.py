import math

import torch

from tribyol.eval.knn import knn_accuracy, knn_predict


def test_weighted_vote_matches_hand_computation():
    # Bank: two class-0 points at 60 and 90 degrees from the query, one class-1 point at 0.
    bank = torch.tensor([[0.5, math.sqrt(3) / 2], [0.0, 1.0], [3.0, 0.0]])
    bank_y = torch.tensor([0, 0, 1])
    query = torch.tensor([[2.0, 0.0]])  # cosine 0.5, 0.0, 1.0 to the bank
    # T = 1: class 0 gets e^0.5 + e^0 = 2.65, class 1 gets e^1 = 2.72 -> class 1
    assert knn_predict(bank, bank_y, query, k=3, temperature=1.0).tolist() == [1]
    # T = 10: class 0 gets e^0.05 + e^0 = 2.05, class 1 gets e^0.1 = 1.11 -> class 0
    assert knn_predict(bank, bank_y, query, k=3, temperature=10.0).tolist() == [0]
    # k = 1: only the nearest votes
    assert knn_predict(bank, bank_y, query, k=1, temperature=10.0).tolist() == [1]


def test_accuracy_ignores_unlabelled_and_chunks():
    bank = torch.eye(4)
    bank_y = torch.tensor([0, 1, 2, -1])
    queries = torch.eye(4)[:3] + 0.01
    assert knn_accuracy(bank, bank_y, queries, torch.tensor([0, 1, 2]), k=1) == 100.0
    pred = knn_predict(bank, bank_y, queries, k=1, chunk_size=1)
    assert pred.tolist() == [0, 1, 2]
