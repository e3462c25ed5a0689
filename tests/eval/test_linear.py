import torch

from tribyol.eval.linear import linear_probe


def separable(n: int, dim: int = 16, classes: int = 4, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(classes, dim, generator=g) * 4
    y = torch.arange(n) % classes
    x = centres[y] + 0.3 * torch.randn(n, dim, generator=g)
    return x, y


def test_separable_features_reach_full_accuracy():
    x, y = separable(600)
    train_x, train_y, test_x, test_y = x[:400], y[:400], x[400:], y[400:]
    result = linear_probe(train_x, train_y, test_x, test_y, seed=0, max_iter=50)
    assert result.top1 > 99.0
    assert result.val_top1 > 99.0
    assert result.num_val == 40 and result.num_train == 400 and result.num_test == 200
    assert len(result.val_scores) == 5


def test_random_labels_stay_near_chance_and_penalty_is_chosen_on_validation():
    g = torch.Generator().manual_seed(0)
    train_x, test_x = torch.randn(300, 32, generator=g), torch.randn(300, 32, generator=g)
    train_y = torch.randint(0, 4, (300,), generator=g)
    test_y = torch.randint(0, 4, (300,), generator=g)
    result = linear_probe(train_x, train_y, test_x, test_y, seed=0)
    assert result.top1 < 40.0
    assert f"{result.weight_decay:g}" in result.val_scores
    assert result.val_top1 == max(result.val_scores.values())


def test_same_seed_same_result_and_unlabelled_items_ignored():
    x, y = separable(200)
    y_unl = torch.cat([y, torch.full((50,), -1)])
    x_unl = torch.cat([x, torch.randn(50, x.shape[1])])
    a = linear_probe(x_unl, y_unl, x, y, seed=3, max_iter=50)
    b = linear_probe(x, y, x, y, seed=3, max_iter=50)
    assert a.num_train == 200
    assert a.top1 == b.top1 and a.weight_decay == b.weight_decay


def test_no_validation_split_is_reported_as_none_not_nan():
    x, y = separable(200)
    result = linear_probe(x, y, x, y, val_fraction=0.0, max_iter=20)
    assert result.val_top1 is None and result.num_val == 0 and result.val_scores == {}
    assert result.weight_decay == 1e-6  # the grid's first penalty, nothing searched
    assert result.val_text() == "no val split"
    searched = linear_probe(x, y, x, y, val_fraction=0.1, max_iter=20)
    assert searched.val_text() == f"val {searched.val_top1:.2f}%"
