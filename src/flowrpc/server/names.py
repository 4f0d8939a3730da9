"""Two-word slugs for runs created without a name ("orange-salamander"), as Prefect names them."""

import random

ADJECTIVES = """
    amber agile amiable ancient brave bright brisk calm clever cosmic crimson curious daring
    dapper eager electric emerald fancy fearless fiery gentle glowing golden grinning hallowed
    happy hidden humble icy jolly keen lively lucky lunar magnetic mellow merry mighty misty
    nimble noble olive orange patient placid polite proud quick quiet radiant rapid rustic sage
    scarlet serene shiny silver sleek smooth snowy solar spiral steady stellar sturdy sunny
    swift tan tidy tireless tranquil true upbeat velvet vivid wandering warm wise witty zealous
""".split()
ANIMALS = """
    albatross alligator alpaca antelope badger beaver bison bobcat buffalo camel capybara
    caribou cheetah chipmunk cobra condor cougar coyote crane crow dingo dolphin donkey eagle
    eel elk falcon ferret finch flamingo fox gazelle gecko gibbon giraffe gopher gorilla grouse
    hare hawk hedgehog heron hippo hornet hyena ibex iguana jackal jaguar kangaroo kestrel koala
    lemur leopard lion llama lobster lynx macaw mammoth manatee marmot marten meerkat mink mole
    moose narwhal newt ocelot octopus okapi orca oriole otter owl panda panther parrot pelican
    penguin pheasant pigeon puffin python quail rabbit raccoon raven reindeer rhino robin
    salamander seal shark skunk sloth snail sparrow squid stork swan tapir tiger toad toucan
    trout turtle viper vulture walrus weasel whale wolf wombat yak zebra
""".split()


def slug() -> str:
    return f"{random.choice(ADJECTIVES)}-{random.choice(ANIMALS)}"
