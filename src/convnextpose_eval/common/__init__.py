"""Small helpers every room uses: the one-line errors, atomic writes, where a process stands among its ranks, the Human3.6M vocabulary and camera geometry."""
