"""What every stage leans on and none of them is about: the infrastructure of the library.

    errors.py        VECError (one line for the user, exit 2) and VECWarning
    io.py            atomic files and folders, safe loading of torch files, free space, seeding
    download.py      one file from the web: resumable, verified, atomic (weights, datasets, released sets)
    distributed.py   torchrun: ranks, shares, gathers; a single process is the rank of one
    run_lock.py      one run at a time per work folder
    prefetch.py      reading the next batch on a thread while this one is computed
    precision.py     which precisions a device runs natively, and autocast
    video_frames.py  the frames of a video file, for every module that reads one

Nothing here imports a stage (utils/datasets, flow, foreground, cubes, training, scoring, metrics,
report), the config or an application (pipeline, own_video, live). The scripts' shared command
line, which reads the config, is utils/cli.py.
"""
