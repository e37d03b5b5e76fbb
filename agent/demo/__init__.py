"""``make demo``: a sandboxed ID-1 host that shows, in ``id1 tui``, what the agent does.

    main.py                 the command (``python -m agent.demo``): set up, dashboard, clean up
    story.py                the timeline of publications and what the narration says
    vendor.py               the demo vendor: key, artifacts, release descriptions, ``id1 feed build``
    capability_service.py   the tiny HTTP service every demo artifact carries
    feed_server.py          the feed on loopback (a stdlib server in a thread)
    host.py                 the agent's config, ``id1 agent run`` in the background, its units
    sandbox.py              the sandbox folder and the processes that refer to it
    errors.py               DemoError, StoryStuck

Nothing here is imported by the agent itself; the demo drives it as an operator would, through
the ``id1`` command and its API.
"""
