"""Trained models kept by the server: score models (`score`) and Var-RUOT models (`ruot`)."""
