"""Pure flow computation: the pipeline, the per-host compiler, the planner and the packet tracer."""
