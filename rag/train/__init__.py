"""Training models from a user's own labels (`rag train ...`); it uses evaluation (`rag.eval`) to measure them,
so it sits above both the components it trains and the evaluation."""
