"""The IE pipeline, one module a step: data (the inputs) -> variables (block inputs and outputs captured from the
model) -> measure (the MI problems, estimated in chunks with `ie_jax.mi`, saved as they finish in a store) ->
result (IE, E(t), totals, bounds and flags, JSON and CSV)."""
