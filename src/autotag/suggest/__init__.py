"""Suggestions built on tagging: hashtags with abstention, an audit of user-typed tags and the
out-of-domain scores both use. This layer sits above the pipeline; the plain vocabulary code in
autotag.taxonomy sits below it and never imports it."""
