"""The operator console (issue 19): the sync seen and fixed from a browser, under /console/.

`app.Console` is a WSGI app the daemon's HTTP app mounts when `console: {enabled: true}`;
`auth` holds users, password hashes, signed session cookies and CSRF tokens.
"""
