"""fails: raises, to show Lambda's error shape."""


class PaymentDeclined(Exception):
    pass


def handler(event, context):
    raise PaymentDeclined("card ending 4242 was declined")
