"""The configuration stage: the YAML file read and validated (schema), the user's own data and model
files, framework options, the paths a user hands mlbench, and the checks across a whole sweep."""
