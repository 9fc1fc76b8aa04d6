"""hello: echoes the event back with a greeting."""


def handler(event, context):
    print("hello from", context.function_name)
    return {"message": "hello", "event": event, "request_id": context.aws_request_id}
