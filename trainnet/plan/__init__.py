"""The compiler: config -> filter -> splits -> shapes -> backward marks -> in place -> fuse
-> params -> memory (passes 1 to 8, in ``compile_net``'s order)."""

from trainnet.plan.compile import compile_net
from trainnet.plan.plan import Blob, ParamSlot, ParamUse, Plan, Region, Step
from trainnet.plan.text import format_plan

__all__ = ["Blob", "ParamSlot", "ParamUse", "Plan", "Region", "Step", "compile_net", "format_plan"]
