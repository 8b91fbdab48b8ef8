"""Wire formats shared by the gateway and the response centre.

One home for the event envelope, its signature and the centre's receipts, so the two
sides can never disagree about the bytes that are signed.
"""
