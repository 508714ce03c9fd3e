"""A callback of scikit-learn's protocol that records every epoch's weights (shared by the
callback tests of both engines)."""


class Recorder:
    """A callback that records every epoch's weights and can ask to stop at an epoch."""

    def __init__(self, stop_at=None):
        self.stop_at = stop_at
        self.weights = []
        self.tasks = []

    def setup(self, estimator, context):
        pass

    def teardown(self, estimator, context):
        pass

    def on_fit_task_begin(self, estimator, context):
        pass

    def on_fit_task_end(self, estimator, context, *, fitted_estimator=None):
        self.tasks.append(context.task_name)
        if context.task_name in ("epoch", "iteration") and fitted_estimator is not None:
            if hasattr(fitted_estimator, "coefs_"):
                self.weights.append([c.copy() for c in fitted_estimator.coefs_]
                                    + [b.copy() for b in fitted_estimator.intercepts_])
            else:
                self.weights.append([fitted_estimator.coef_.copy(),
                                     fitted_estimator.intercept_.copy()])
            return self.stop_at is not None and len(self.weights) >= self.stop_at
        return False
