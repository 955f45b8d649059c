"""The HTTP endpoint: ``/healthz``, Prometheus ``/metrics`` (``metrics.py``) and the
read-only status page (``pages.py`` and ``history.py`` gather each page's data,
``render.py`` and ``templates/`` render it, ``charts.py`` draws inline SVG), behind the
token of ``auth.py``; ``http.py`` serves them."""
