"""Types every other speechlm package shares. Imports nothing from speechlm."""
