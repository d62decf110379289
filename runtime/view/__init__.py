"""ccs-view: a listening page for an output, served on 127.0.0.1 or written as one HTML file.

``analysis`` computes what is plotted (numpy), ``page`` builds the page's data and HTML, ``server`` serves it
(stdlib, Range requests, exact paths only), ``cli`` is the command.
"""
