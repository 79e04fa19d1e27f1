"""Dense (fully connected) kernel family: semantics.py (bit-exact contract), templates/ (AIE C++), and the
parameters both share."""
