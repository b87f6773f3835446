"""VM control and test automation (seed 003): QGA now; QMP, virtio-serial, Spice and the
libvirt host pool come with the ATP issue."""
