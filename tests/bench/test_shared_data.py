"""bench.shared_data: the shared data folder is found from the main checkout and from a
worktree one level further down (built here; the real ../shared is not needed)."""
from bench.shared_data import find_shared_data


def test_beside_the_checkout_first(tmp_path):
    (tmp_path / "work" / "shared" / "data").mkdir(parents=True)
    (tmp_path / "shared" / "data").mkdir(parents=True)
    assert find_shared_data(tmp_path / "work" / "main") == tmp_path / "work" / "shared" / "data"


def test_from_a_worktree_one_level_further_down(tmp_path):
    (tmp_path / "work" / "shared" / "data").mkdir(parents=True)
    (tmp_path / "work" / "wt" / "mine").mkdir(parents=True)
    assert find_shared_data(tmp_path / "work" / "wt" / "mine") == tmp_path / "work" / "shared" / "data"


def test_neither_there_names_the_usual_place(tmp_path):
    assert find_shared_data(tmp_path / "work" / "main") == tmp_path / "work" / "shared" / "data"
