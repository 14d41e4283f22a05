"""Recorded-format payloads for the offline demo, served by :mod:`feeds.replay`.

arXiv ids, titles, author names and categories are real; every abstract, post, comment and
engagement number was written for the demo. ``manifest.json`` maps each file to the request it
answers and lists the arXiv submission dates the replayed query API reports.
"""
