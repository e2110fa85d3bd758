"""Trailer cuts → engagement reports: the pipeline (decode → detect → track → encode → engagement), the tracker,
how window scores become a clip's report, the report itself, comparing cuts and the self-contained HTML export."""
