"""What one rule does for one well or one fold: each function reads its inputs, calls the library and writes
its outputs, so the workflow scripts stay thin."""
