"""Images: OCI images pulled (through skopeo) into one shared layout, each
layer unpacked once and stacked with overlayfs under a container's own
writable layer, the image's config made the container's.

    reference.py   what a reference names and where skopeo finds it
    layers.py      layers unpacked safely, whiteouts made overlayfs's own
"""
