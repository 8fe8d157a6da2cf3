"""placeholder"""
async def run(ctx):
    return []
