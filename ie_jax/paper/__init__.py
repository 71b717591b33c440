"""The paper's analyses on top of the IE pipeline (the notebooks' functions), their statistics and text
generation, and the report: figures and one HTML page for any run directory."""
