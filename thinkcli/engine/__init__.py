"""The only code that touches llama.cpp: model loading, the decode loop, budgets, votes."""
