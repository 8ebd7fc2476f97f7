"""The compiler: config -> filter -> splits -> shapes -> backward marks -> in place -> params
-> memory."""

from trainnet.plan.compile import compile_net
from trainnet.plan.plan import Blob, ParamSlot, ParamUse, Plan, Region, Step
from trainnet.plan.text import format_plan

__all__ = ["Blob", "ParamSlot", "ParamUse", "Plan", "Region", "Step", "compile_net", "format_plan"]
