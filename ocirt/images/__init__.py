"""Images: OCI images pulled (through skopeo) into one shared layout, each
layer unpacked once and stacked with overlayfs under a container's own
writable layer, the image's config made the container's.

    reference.py   what a reference names and where skopeo finds it
    store.py       ImageStore: pull, list, remove; the layout and the layers
    layers.py      layers unpacked safely, whiteouts made overlayfs's own
    config.py      the image's config made a container's process

What the command line's parser needs lives here, so that a verb that
pulls nothing imports none of the rest.
"""

PULL_POLICIES = ("missing", "always", "never")
