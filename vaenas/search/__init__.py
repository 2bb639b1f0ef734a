"""Search loops (DESIGN §2). Here: the tabular VAENAS study on real ground truth (`tabular`), the
evolutionary and random searches it compares (`evolution`), its typed config (`config`) and the
CLI `python -m vaenas.search` (`__main__`)."""
