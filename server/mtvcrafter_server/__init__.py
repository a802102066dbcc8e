"""The MTVCrafter local GPU server (FastAPI): job queue, progress, cancel, persistent results.

Not implemented yet: ``mtvcrafter animate`` renders in-process for now.
"""
