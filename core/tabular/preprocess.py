"""Column typing, validation, scaling and category vocabularies for tabular data.

:class:`TabularPreprocessor` turns a numpy array or pandas DataFrame into an
:class:`EncodedTable`: standardised numeric columns (float32) and integer category codes
(int64; code 0 is reserved for "unknown", i.e. a category not seen in training). Its whole
fitted state is a JSON-able dict (``to_dict``/``from_dict``), saved inside model bundles.

Column typing at ``fit``: numeric dtypes (ints, floats) are numeric; object, category,
string and bool columns are categorical. A numpy array of a numeric dtype is all numeric
with columns named ``x0 .. x{d-1}``.

Example:
    >>> pre = TabularPreprocessor().fit(df)              # doctest: +SKIP
    >>> table = pre.transform(df_new)                    # doctest: +SKIP
    >>> table.numeric.shape, table.codes.shape           # doctest: +SKIP
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import DataValidationError, NotFittedError

@dataclass
class EncodedTable:
    """Model-ready view of a table.

    Attributes:
        numeric: ``(n, n_numeric)`` float32, standardised with the training statistics.
        codes: ``(n, n_categorical)`` int64 category codes (0 = unknown category).
    """

    numeric: np.ndarray
    codes: np.ndarray

    def __len__(self) -> int:
        return len(self.numeric)


def _to_frame(X):
    """Return ``(DataFrame, names_or_None)``; names only when the input had string columns."""
    import pandas as pd

    if isinstance(X, pd.DataFrame):
        names = [str(c) for c in X.columns]
        if len(set(names)) != len(names):
            dup = sorted({n for n in names if names.count(n) > 1})
            raise DataValidationError(f"duplicate column names: {dup}")
        frame = X.copy(deep=False)
        frame.columns = names
        all_str = all(isinstance(c, str) for c in X.columns)
        return frame, (names if all_str else None)
    if hasattr(X, "toarray") or type(X).__module__.startswith("scipy.sparse"):
        raise DataValidationError("sparse input is not supported; pass a dense array "
                                  "(X.toarray()) or a DataFrame")
    if isinstance(X, pd.Series):
        raise DataValidationError("expected a 2-D table (DataFrame or array), got a Series; "
                                  "use series.to_frame() for a single column")
    try:
        array = np.asarray(X)
    except (ValueError, TypeError) as err:
        raise DataValidationError(f"cannot read input as a table: {err}") from None
    if array.ndim != 2:
        raise DataValidationError(f"expected a 2-D table (rows x columns), got an array with "
                                  f"shape {array.shape}. Reshape your data with "
                                  "reshape(-1, 1) for a single feature")
    if array.dtype.kind == "c":
        raise DataValidationError("Complex data not supported; pass real values")
    if array.dtype.kind in "biuf":  # plain numeric array: avoid pandas inference
        frame = pd.DataFrame(array, columns=[f"x{j}" for j in range(array.shape[1])], copy=False)
    else:
        frame = pd.DataFrame(array, columns=[f"x{j}" for j in range(array.shape[1])])
        frame = frame.infer_objects()
    return frame, None


def _check_shape(frame) -> None:
    if frame.shape[0] == 0:
        raise DataValidationError(f"input is empty: 0 sample(s) (shape={frame.shape}) while a "
                                  "minimum of 1 is required.")
    if frame.shape[1] == 0:
        raise DataValidationError(f"input has no columns: 0 feature(s) (shape={frame.shape}) "
                                  "while a minimum of 1 is required.")


def _numeric_column(series, name: str) -> np.ndarray:
    """Float64 values of a numeric column, or an error naming the column and bad value."""
    import pandas as pd

    if series.dtype.kind in "biuf" and not isinstance(series.dtype, pd.CategoricalDtype):
        values = series.to_numpy(dtype=np.float64, na_value=np.nan)
    else:
        coerced = pd.to_numeric(series, errors="coerce")
        bad = coerced.isna() & series.notna()
        if bad.any():
            value = series[bad].iloc[0]
            raise DataValidationError(f"column {name!r} is numeric but holds the non-numeric "
                                      f"value {value!r} ({int(bad.sum())} such rows)")
        values = coerced.to_numpy(dtype=np.float64, na_value=np.nan)
    finite = np.isfinite(values)
    if not finite.all():
        n_nan = int(np.isnan(values).sum())
        n_inf = int((~finite).sum()) - n_nan
        raise DataValidationError(f"column {name!r} has {n_nan} missing (NaN) and {n_inf} "
                                  "infinite values; impute or drop them first")
    return values


def _category_strings(series, name: str) -> np.ndarray:
    missing = series.isna().to_numpy()
    if missing.any():
        raise DataValidationError(f"column {name!r} has {int(missing.sum())} missing values; "
                                  "fill them (e.g. with a 'missing' category) first")
    return series.astype(str).to_numpy(dtype=object)


class TabularPreprocessor:
    """Validates tables and encodes them; fitted state is plain JSON.

    Attributes (after ``fit``):
        columns_: input column names in order.
        kinds_: ``"numeric"`` or ``"categorical"`` per column.
        has_names_: whether the training input was a DataFrame with string column names.
        mean_, scale_: per numeric column.
        vocab_: per categorical column, the training categories (code = index + 1).
    """

    def __init__(self):
        self.columns_: list[str] | None = None

    # -- fitting --------------------------------------------------------------------------

    def fit(self, X) -> "TabularPreprocessor":
        import pandas as pd

        frame, names = _to_frame(X)
        _check_shape(frame)
        self.columns_ = list(frame.columns)
        self.has_names_ = names is not None
        self.kinds_ = []
        for name in self.columns_:
            dtype = frame[name].dtype
            numeric = dtype.kind in "iuf" and not isinstance(dtype, pd.CategoricalDtype)
            self.kinds_.append("numeric" if numeric else "categorical")
        numeric, strings = self._columns(frame)
        self.mean_ = numeric.mean(axis=0).tolist() if numeric.size else []
        std = numeric.std(axis=0) if numeric.size else np.zeros(0)
        self.scale_ = np.where(std > 1e-12, std, 1.0).tolist()
        self.vocab_ = [sorted(set(col.tolist())) for col in strings]
        return self

    def _columns(self, frame) -> tuple[np.ndarray, list[np.ndarray]]:
        numeric = [_numeric_column(frame[c], c) for c, k in zip(self.columns_, self.kinds_)
                   if k == "numeric"]
        strings = [_category_strings(frame[c], c) for c, k in zip(self.columns_, self.kinds_)
                   if k == "categorical"]
        matrix = np.stack(numeric, axis=1) if numeric else np.zeros((len(frame), 0))
        return matrix, strings

    # -- properties -------------------------------------------------------------------------

    def _check_fitted(self) -> None:
        if self.columns_ is None:
            raise NotFittedError("TabularPreprocessor is not fitted; call fit(X) first")

    @property
    def n_columns(self) -> int:
        return len(self.columns_)

    @property
    def numeric_index(self) -> list[int]:
        return [j for j, k in enumerate(self.kinds_) if k == "numeric"]

    @property
    def categorical_index(self) -> list[int]:
        return [j for j, k in enumerate(self.kinds_) if k == "categorical"]

    @property
    def cardinalities(self) -> list[int]:
        """Number of codes per categorical column, including the unknown code 0."""
        return [len(v) + 1 for v in self.vocab_]

    # -- transforming -----------------------------------------------------------------------

    def align(self, X, owner: str = "TabularPreprocessor"):
        """Validate ``X``'s columns against the fitted ones; returns a DataFrame in fitted order.

        ``owner`` names the estimator in error messages.
        """
        self._check_fitted()
        frame, names = _to_frame(X)
        _check_shape(frame)
        if names is not None and self.has_names_:
            missing = [c for c in self.columns_ if c not in frame.columns]
            extra = [c for c in frame.columns if c not in self.columns_]
            if missing or extra:
                raise DataValidationError(
                    f"columns do not match the fitted ones: missing {missing}, unexpected {extra}")
            return frame[self.columns_]
        if frame.shape[1] != self.n_columns:
            raise DataValidationError(f"X has {frame.shape[1]} features, but {owner} is expecting "
                                      f"{self.n_columns} features as input (fitted columns: "
                                      f"{self.columns_})")
        frame.columns = self.columns_
        return frame

    def transform(self, X, owner: str = "TabularPreprocessor") -> EncodedTable:
        """Validate and encode ``X`` (unseen categories get code 0)."""
        self._check_fitted()
        if (isinstance(X, np.ndarray) and X.ndim == 2 and X.dtype.kind in "iuf"
                and X.shape[0] > 0 and X.shape[1] == self.n_columns
                and not self.categorical_index and np.isfinite(X).all()):
            # fast path for an all-numeric model scoring a clean numeric array (same
            # values as the DataFrame route below; anything unusual takes that route and
            # gets its specific error)
            numeric = X.astype(np.float64, copy=False)
            mean = np.asarray(self.mean_, dtype=np.float64)
            scale = np.asarray(self.scale_, dtype=np.float64)
            return EncodedTable(((numeric - mean) / scale).astype(np.float32),
                                np.zeros((len(X), 0), dtype=np.int64))
        frame = self.align(X, owner)
        numeric, strings = self._columns(frame)
        mean = np.asarray(self.mean_, dtype=np.float64)
        scale = np.asarray(self.scale_, dtype=np.float64)
        numeric = ((numeric - mean) / scale).astype(np.float32)
        codes = np.zeros((len(frame), len(strings)), dtype=np.int64)
        for j, (col, vocab) in enumerate(zip(strings, self.vocab_)):
            lookup = {v: i + 1 for i, v in enumerate(vocab)}
            codes[:, j] = [lookup.get(v, 0) for v in col]
        return EncodedTable(numeric, codes)

    # -- the column-order matrix view (for SHAP) --------------------------------------------

    def to_matrix(self, table: EncodedTable) -> np.ndarray:
        """``(n, n_columns)`` float64 in input column order: scaled numbers and codes."""
        out = np.empty((len(table), self.n_columns), dtype=np.float64)
        out[:, self.numeric_index] = table.numeric
        out[:, self.categorical_index] = table.codes
        return out

    def from_matrix(self, matrix) -> EncodedTable:
        """Inverse of :meth:`to_matrix`; codes are rounded (SHAP substitutes whole values)."""
        matrix = np.asarray(matrix, dtype=np.float64)
        codes = np.rint(matrix[:, self.categorical_index]).astype(np.int64)
        codes = np.clip(codes, 0, np.asarray(self.cardinalities, dtype=np.int64) - 1)
        return EncodedTable(matrix[:, self.numeric_index].astype(np.float32), codes)

    # -- state ---------------------------------------------------------------------------------

    def to_dict(self) -> dict:
        self._check_fitted()
        return {"columns": self.columns_, "kinds": self.kinds_, "has_names": self.has_names_,
                "mean": self.mean_, "scale": self.scale_, "vocab": self.vocab_}

    @classmethod
    def from_dict(cls, state: dict) -> "TabularPreprocessor":
        pre = cls()
        pre.columns_ = list(state["columns"])
        pre.kinds_ = list(state["kinds"])
        pre.has_names_ = bool(state["has_names"])
        pre.mean_ = list(state["mean"])
        pre.scale_ = list(state["scale"])
        pre.vocab_ = [list(v) for v in state["vocab"]]
        return pre
