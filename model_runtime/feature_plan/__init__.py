"""Feature plans: a CadQuery program's modelling steps with resolved geometry, for a PartDesign Body.

``tracer.Recorder`` records while a program runs (inside the sandbox job in production);
``parameterise`` rewrites the program so its literals become the plan's named parameters. The plan's
JSON shape is defined in ``model_runtime.protocol`` (``check_feature_plan``).
"""

from model_runtime.feature_plan.parameterise import parameterise
from model_runtime.feature_plan.tracer import Recorder, trace

__all__ = ["Recorder", "parameterise", "trace"]
