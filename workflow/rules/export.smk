# the plate as one OME-Zarr HCS store (plateseg.io.hcs): per-well jobs write the wells, tiny local jobs the
# row and plate groups (only their zarr.json)
localrules:
    hcs_row,
    hcs_plate,


rule hcs_well:
    """One well of results/{plate}/plate.zarr: every field's image pyramid with its label sets in labels/."""
    input:
        unpack(hcs_well_inputs),
    output:
        directory("results/{plate}/plate.zarr/{row}/{column}"),
    params:
        names=list(hcs_labelsets()),
        tile_size=config["tiling"]["tile_size"],
        code=script_code("hcs_well"),
    log:
        "logs/{plate}/hcs_well_{row}{column}.log",
    threads: 1
    resources:
        mem_mb=mem_mb(2000),
        runtime=30,
    conda:
        CONDA_ENV
    script:
        "../scripts/hcs_well.py"


rule hcs_row:
    """The group of one row of the HCS plate."""
    output:
        "results/{plate}/plate.zarr/{row}/zarr.json",
    params:
        code=script_code("hcs_row"),
    log:
        "logs/{plate}/hcs_row_{row}.log",
    threads: 1
    resources:
        mem_mb=mem_mb(500),
        runtime=5,
    conda:
        CONDA_ENV
    script:
        "../scripts/hcs_row.py"


rule hcs_plate:
    """The plate group of the HCS plate (rows, columns, wells, field count), once every well is written."""
    input:
        hcs_plate_inputs,
    output:
        "results/{plate}/plate.zarr/zarr.json",
    params:
        wells=plate_wells,
        field_count=plate_field_count,
        code=script_code("hcs_plate"),
    log:
        "logs/{plate}/hcs_plate.log",
    threads: 1
    resources:
        mem_mb=mem_mb(500),
        runtime=5,
    conda:
        CONDA_ENV
    script:
        "../scripts/hcs_plate.py"
