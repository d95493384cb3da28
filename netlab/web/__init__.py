"""`netlab web`: a live picture of a lab in a browser (Starlette app, served by uvicorn).

netlab.web.layout draws the lab as cytoscape elements, netlab.web.snapshot
gathers what the page shows from the lab's state and journal, netlab.web.app
serves the page and pushes snapshots to it with server-sent events.
"""
