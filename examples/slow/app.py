"""slow: loops past its timeout; thaw stops it at the function timeout."""


def handler(event, context):
    n = 0
    while True:
        n += 1
