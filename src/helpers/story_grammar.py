"""The story grammar's data: a child's lexicon, the plot shapes and the questions each shape answers.

Pure data, read by :mod:`helpers.stories`, which writes, recognises and
questions stories with it. Everything the generator can say is here, so
:func:`grammar_data` (all of it as plain lists) is what the corpus version,
and with it every cache of prepared stories, depends on: editing a comment
anywhere changes nothing, editing a word or a template changes the version.
"""

from __future__ import annotations

from typing import NamedTuple

# ---------------------------------------------------------------------------
# The lexicon: words a 3-4 year old knows.
# ---------------------------------------------------------------------------

GIRL_NAMES = (
    "Lily", "Mia", "Emma", "Anna", "Sara", "Lucy", "Ella", "Zoe", "Amy", "Ruby",
    "Molly", "Sophie", "Chloe", "Grace", "Emily", "Hannah", "Kate", "Lisa", "Maya", "Nora",
    "Olivia", "Ava", "Jenny", "Julia", "Lola", "Luna", "Megan", "Nina", "Polly", "Rosie",
    "Sally", "Sue", "Tina", "Wendy", "Abby", "Bella", "Clara", "Dora", "Eva", "Fay",
    "Hazel", "Jane", "Katie", "Lena", "Mary", "Millie", "Nell", "Pam", "Rita", "Susie",
    "Tess", "Zara", "Alice", "Beth", "Cara", "Diana", "Elsa", "Freya", "Gina", "Heidi",
    "Isla", "Jess", "Kara", "Laura", "Maggie", "Nancy", "Paula", "Rachel", "Sophia", "Tara",
    "Uma", "Vera", "Wanda", "Yara", "Zelda", "Bonnie", "Cindy", "Daphne", "Erin", "Fiona",
    "Gemma", "Jill", "Kelly", "Leah", "Mandy", "Nadia", "Penny", "Rosa", "Sadie", "Tilly",
    "Vicky", "Becky", "Carly", "Edie", "Greta", "Hattie", "Ida", "Josie", "Lottie", "Mabel",
)
BOY_NAMES = (
    "Tom", "Ben", "Max", "Sam", "Jack", "Leo", "Tim", "Joe", "Bob", "Dan",
    "Finn", "Jake", "Luke", "Mark", "Ned", "Ollie", "Pete", "Ryan", "Sid", "Ted",
    "Theo", "Zack", "Adam", "Billy", "Eli", "Felix", "Gus", "Henry", "Jay", "Kevin",
    "Leon", "Louis", "Mike", "Nick", "Oscar", "Owen", "Paul", "Ray", "Rex", "Roy",
    "Seth", "Toby", "Tony", "Andy", "Brian", "Carl", "David", "Eddie", "Frank", "Harry",
    "Ian", "Jim", "Kyle", "Liam", "Noah", "Otto", "Peter", "Ricky", "Simon", "Timmy",
    "Victor", "Wes", "Aaron", "Bruno", "Caleb", "Dean", "Ethan", "Fred", "Glen", "Hugo",
    "Isaac", "Jacob", "Kai", "Lars", "Milo", "Nate", "Omar", "Percy", "Rudy", "Scott",
    "Vince", "Walt", "Xavier", "Zeke", "Arlo", "Benny", "Cole", "Drew", "Evan", "Gabe",
    "Hank", "Ivan", "Joel", "Kurt", "Lenny", "Matt", "Neil", "Ozzie", "Phil", "Stan",
)
NAMES = {"female": GIRL_NAMES, "male": BOY_NAMES}
PRONOUNS = {  # the hero's slots; the friend's are the same with an F_ prefix
    "female": {"HE": "she", "HIS": "her", "HIM": "her", "KID": "girl"},
    "male": {"HE": "he", "HIS": "his", "HIM": "him", "KID": "boy"},
}
GENDERS = ("female", "male")
PARENTS = ("Mom", "Dad", "Grandma", "Grandpa")
AGES = ("three", "four", "five", "six")
DAYS = ("sunny", "bright", "warm", "windy", "cloudy", "cool", "lovely", "nice", "beautiful", "quiet",
        "summer", "spring", "winter", "golden", "breezy", "snowy", "misty", "fine")
COLORS = ("red", "blue", "green", "yellow", "pink", "purple", "orange", "white", "brown",
          "black", "gray", "gold", "silver")
TRAITS = ("kind", "funny", "gentle", "clever", "cheerful", "quiet", "silly", "friendly",
          "helpful", "sweet", "shy", "happy", "polite", "playful", "smart", "loud", "busy",
          "curious", "tall", "strong")
SIZES = ("little", "tiny", "small", "baby", "fluffy", "soft", "young", "sweet")
HOBBIES = (
    "run", "jump", "sing", "dance", "draw", "paint", "read books", "climb trees",
    "play outside", "swim", "build with blocks", "blow bubbles", "look at the stars",
    "pick flowers", "splash in puddles", "play pretend", "dig in the sand", "watch the clouds",
    "laugh", "play tag", "play hide and seek", "color pictures", "sing songs", "plant seeds",
    "make funny faces", "roll down hills", "hum little tunes", "skip", "draw with chalk",
    "build forts", "play in the mud", "listen to stories", "help in the garden", "clap and stomp",
    "ride on swings", "collect shiny stones", "jump in leaves", "make up games",
    "stack cups", "tell jokes", "hop on one foot", "spin in circles", "march around the house",
    "water the plants", "watch the rain", "play in the snow", "wiggle and giggle", "play music",
    "blow on dandelions", "dress up", "count to ten", "look for bugs", "sing in the bath",
    "paint with fingers", "read with a flashlight", "go for long walks", "play with clay",
    "draw rainbows", "string beads", "help bake bread", "sweep the floor", "fold paper",
    "skip stones", "try new things", "hum songs", "wear silly hats", "ride the bus",
    "wash the dishes", "climb on rocks", "whisper secrets", "collect pinecones", "chase bubbles",
    "help with the laundry", "rake leaves", "fix things with tools", "make paper chains",
    "nap in a hammock", "do somersaults", "sing lullabies",
)
ANIMALS = (
    "puppy", "kitten", "bird", "duck", "bunny", "frog", "owl", "turtle", "mouse", "squirrel",
    "pony", "lamb", "chick", "butterfly", "ladybug", "hedgehog", "goat", "piglet", "duckling",
    "snail", "fox", "hamster", "parrot", "goose", "cow", "horse", "pig", "hen", "rabbit",
    "monkey", "elephant", "giraffe", "penguin", "seal", "deer", "ant", "bee", "caterpillar",
    "robin", "crab", "dog", "cat", "calf", "raccoon", "beaver", "otter", "zebra", "tiger",
    "lion", "koala", "panda", "whale", "dolphin", "swan", "lizard", "worm", "beetle", "sheep",
    "donkey", "mole", "kangaroo", "octopus", "eagle", "seagull", "pigeon", "crow", "chipmunk",
    "toad", "llama", "camel", "hippo", "rhino",
)
TOYS = (
    "ball", "kite", "doll", "teddy bear", "toy car", "toy truck", "train", "boat", "drum",
    "robot", "puzzle", "jump rope", "bucket", "balloon", "picture book", "shovel", "wagon",
    "bike", "scooter", "whistle", "puppet", "airplane", "rocket", "toy dinosaur", "spinning top",
    "marble", "rag doll", "tea set", "guitar", "trumpet", "crown", "magic wand", "sailboat",
    "fire truck", "race car", "rocking horse", "bouncy ball", "paint set", "toy phone",
    "music box", "snow globe", "tricycle", "skateboard", "pinwheel", "toy tractor",
    "sled", "xylophone", "harmonica", "dollhouse", "bubble wand", "toy castle",
)
FOODS = (
    "apple", "cookie", "sandwich", "banana", "cupcake", "muffin", "pear", "peach", "plum",
    "carrot", "pancake", "lollipop", "pie", "egg", "cherry", "strawberry", "cracker", "pretzel",
    "waffle", "bagel", "biscuit", "brownie", "melon", "ice cream cone", "cheese sandwich",
    "slice of pizza", "bowl of soup", "cup of milk", "kiwi", "mango", "lemon", "potato",
    "tomato", "cucumber", "jam sandwich", "blueberry muffin", "fruit cup", "honey cake",
)
PLACES = {  # outdoor places and the preposition each one takes
    "park": "in", "garden": "in", "forest": "in", "woods": "in", "meadow": "in", "field": "in",
    "backyard": "in", "playground": "at", "beach": "at", "zoo": "at", "farm": "on", "lake": "at",
    "pond": "by", "river": "by", "hill": "on", "pool": "at", "fair": "at", "market": "at",
    "orchard": "in", "campsite": "at", "town square": "in", "valley": "in", "mountain": "on",
    "island": "on", "harbor": "at", "village": "in", "jungle": "in", "seaside": "at",
}
INDOOR_PLACES = {"kitchen": "in", "bedroom": "in", "living room": "in", "classroom": "in",
                 "library": "at"}
ALL_PLACES = {**PLACES, **INDOOR_PLACES}
FEARS = {  # things to be afraid of, and where each one is found
    "big slide": ("playground", "park"), "big wave": ("beach",), "dark cave": ("forest", "hill"),
    "big horse": ("farm",), "loud lion": ("zoo",), "tall tree": ("garden", "park", "orchard"),
    "high swing": ("playground", "park"), "big goose": ("pond", "lake"),
    "long bridge": ("river", "valley"), "dark tunnel": ("playground",),
    "diving board": ("pool",), "noisy tractor": ("farm", "field"), "spinning ride": ("fair",),
    "big rock": ("hill", "beach"), "buzzing beehive": ("meadow", "garden"),
}
MADE = {  # things a child can make, and where they are made
    "card": ("kitchen", "classroom", "living room"), "cake": ("kitchen",),
    "sandcastle": ("beach",), "paper boat": ("kitchen", "classroom"),
    "kite": ("backyard", "living room"), "picture": ("classroom", "bedroom", "library"),
    "tower": ("bedroom", "living room"), "bird house": ("backyard", "garden"),
    "flower crown": ("meadow", "garden"), "mud pie": ("backyard", "garden"),
    "necklace": ("bedroom", "classroom"), "paper hat": ("kitchen", "classroom"),
    "snowman": ("backyard", "field"),
}
SPOTS = (
    "under a bench", "behind a big tree", "in the tall grass", "under a bush", "next to a big rock",
    "near the gate", "in a pile of leaves", "by the flowers", "under a picnic table",
    "behind the fence", "in the sand", "under a log", "next to the path", "by the water",
    "inside an old box", "in a puddle", "on a low branch", "behind a trash can",
    "behind a flower pot", "inside a hollow tree", "on top of a wall", "in the bushes",
    "under a heap of sand", "between two stones",
)
ANIMAL_TROUBLES = (  # (what was wrong, what the hero did about it)
    ("was stuck in a bush", "pulled it out of the bush"),
    ("had a hurt leg", "wrapped its leg with a soft cloth"),
    ("was lost and could not find its mom", "helped it find its mom"),
    ("was stuck in the mud", "lifted it out of the mud"),
    ("was cold and wet", "wrapped it in a warm blanket"),
    ("was very hungry", "gave it some food and water"),
    ("had fallen into a hole", "reached in and lifted it out"),
    ("was caught in a net", "opened the net and let it go"),
    ("was tangled in some string", "untied the string very gently"),
    ("could not reach the water", "filled a little cup with water for it"),
)
MISHAPS = (  # (what went wrong on a trip, how it was fixed)
    ("it started to rain", "they ran under a big tree until the rain stopped"),
    ("the wind blew very hard", "they hid behind a big rock until the wind stopped"),
    ("they could not find the way back", "a kind lady showed them the way"),
    ("the sky got dark and cold", "they put on warm coats and sang a song"),
    ("their picnic blanket blew away", "they chased it and caught it"),
    ("a big puddle was in the way", "they jumped over it together"),
    ("it got very hot", "they sat in the shade and drank cold water"),
    ("the path got very muddy", "they took off their shoes and walked slowly"),
    ("the ground got very slippery", "they held hands and took small steps"),
)

# ---------------------------------------------------------------------------
# The grammar: plot shapes made of paragraphs, paragraphs made of lines.
# A line is one template, or a tuple of alternatives; SKIP means "say nothing".
# ---------------------------------------------------------------------------

SKIP = ""

INTRO = (
    ("Once upon a time, there was a little {KID} named {NAME}.",
     "There once was a {KID} named {NAME}.",
     "{NAME} was a happy little {KID}.",
     "Once upon a time, a {KID} named {NAME} lived in a small house with {PARENT}."),
    ("{HE} was {AGE} years old.", SKIP),
    ("{HE} loved to {HOBBY}.", "Every day, {NAME} liked to {HOBBY}.",
     "More than anything, {NAME} loved to {HOBBY}."),
)
SCENE = ("The sun was shining and the flowers were blooming.",
         "The sky was blue and the air smelled sweet.", "There were soft white clouds in the sky.",
         "Leaves were dancing in the wind.", SKIP)
CLOSING = ("And they all lived happily ever after.", "It was a very good day.",
           "Everyone smiled all the way home.", SKIP, SKIP, SKIP)


class Shape(NamedTuple):
    """A plot: its paragraphs, the hero's feelings, the key thing and the questions it answers."""

    key: str                         # slot holding the key thing: TOY, FEAR, MADE or ANIMAL
    feelings: tuple[str, ...]        # how the hero feels at the problem
    end_feelings: tuple[str, ...]    # how the hero feels at the end
    paragraphs: tuple[tuple, ...]
    questions: tuple[tuple[str, str, str], ...]  # (kind, question, Story field that answers it)


SHAPES = {
    "lost_toy": Shape(
        "TOY", ("sad", "worried", "upset"), ("happy", "glad", "cheerful"),
        (INTRO + (
            ("{HE} had {A} {COLOR} {TOY}.",
             "{NAME} had {A} {COLOR} {TOY} that {HE} loved very much.",
             "{HIS} favorite toy was {A} {COLOR} {TOY}."),
            ("{HE} took it everywhere.", "{HE} played with it every day.", SKIP)),
         (("One {DAY} day, {NAME} took the {TOY} to the {PLACE}.",
           "One {DAY} day, {NAME} and {PARENT} went to the {PLACE} with the {TOY}."),
          SCENE,
          ("{HE} played with it {AT_PLACE} all morning.", "{NAME} had lots of fun {AT_PLACE}."),
          ("When it was time to go home, {NAME} could not find {HIS} {TOY}.",
           "But then {NAME} lost {HIS} {COLOR} {TOY}.",
           "After a while, {NAME} saw that {HIS} {TOY} was gone.")),
         (("{HE} looked everywhere, but {HE} could not find it.",
           "{NAME} looked under the trees and behind the rocks.",
           "{NAME} searched in the grass, near the swings and by the gate."),
          ("{NAME} felt {FEELING}.", "{NAME} felt so {FEELING} that {HE} began to cry.",
           "{HE} was very {FEELING}."),
          ('"Where is my {TOY}?" cried {NAME}.', '{NAME} said, "I want my {TOY} back!"', SKIP),
          ("Then {HIS} friend {FRIEND} came to help.", "Just then, {FRIEND} walked by and saw {HIM}."),
          ('"Don\'t be sad. I will help you look," said {FRIEND}.',
           '{FRIEND} said, "Let\'s look together!"')),
         (('"Look over there!" shouted {FRIEND}.', '{FRIEND} pointed and yelled, "There it is!"', SKIP),
          ("At last, {FRIEND} found the {TOY} {SPOT}.",
           "After a long search, they found the {TOY} {SPOT}.",
           "Then {NAME} saw {HIS} {COLOR} {TOY} {SPOT}."),
          ('"Thank you, {FRIEND}!" said {NAME}.',
           '{NAME} hugged {FRIEND} and said, "Thank you for helping me!"'),
          ("{NAME} hugged {HIS} {TOY} and felt {END_FEELING}.", "{NAME} felt {END_FEELING} again.",
           "Now {NAME} was {END_FEELING}.")),
         (("From that day on, {NAME} always kept {HIS} {TOY} close.",
           "{NAME} learned to take good care of {HIS} things.", SKIP), CLOSING)),
        (("who", "Who helped {hero} look for the {object}?", "friend"),
         ("what", "What did {hero} lose?", "object_phrase"),
         ("where", "Where was the {object} found?", "spot"),
         ("feeling", "How did {hero} feel when the {object} was lost?", "feeling")),
    ),
    "fear": Shape(
        "FEAR", ("scared", "afraid", "nervous", "frightened"), ("brave", "proud", "happy"),
        (INTRO + (
            ("{HE} liked to go to the {PLACE} with {PARENT}.",
             "One {DAY} day, {NAME} went to the {PLACE} with {PARENT}."),
            ("There was {A} {FEAR} {AT_PLACE}.", "{AT_PLACE}, there was {A} {FEAR}."),
            ("It looked very big and a little scary.", "It made {NAME}'s tummy feel funny.", SKIP),
            ("All the other children thought it was fun.", "Other children were laughing and playing.",
             SKIP)),
         (("{NAME} wanted to try, but {HE} felt {FEELING}.",
           "{NAME} looked at the {FEAR} and felt {FEELING}."),
          ('"I am too {FEELING}," said {NAME}.', '{NAME} whispered, "What if I get hurt?"', SKIP),
          ("{HE} held {PARENT}'s hand tight.", "{HE} stood very still and did not move."),
          ('{PARENT} smiled and said, "You can do it. I am right here."',
           '"Let\'s try it together," said {PARENT}.'),
          ("{NAME} thought about it for a long time.", "{NAME} did not want to be scared anymore."),
          ("{NAME} took a big, deep breath.", "{NAME} counted to three."),
          ("Step by step, {HE} went closer to the {FEAR}.", "Slowly, {HE} walked up to the {FEAR}.")),
         (("It was not so bad after all!", "It was fun!", "It was not scary at all!",
           "It was exciting, like flying!"),
          ('"I did it!" shouted {NAME}.', '{NAME} laughed and said, "Can I do it again?"'),
          ("{NAME} felt {END_FEELING}.", "{NAME} felt very {END_FEELING}.", "{HE} was so {END_FEELING}."),
          ("{PARENT} gave {HIM} a big hug.", SKIP)),
         (("{NAME} learned that trying new things can be fun.",
           "Now {NAME} was not afraid of the {FEAR} anymore.", SKIP), CLOSING)),
        (("who", "Who was with {hero}?", "parent"),
         ("what", "What was {hero} afraid of?", "object_phrase"),
         ("feeling", "How did {hero} feel about the {object} at first?", "feeling")),
    ),
    "quarrel": Shape(
        "TOY", ("angry", "mad", "upset", "grumpy", "cross"), ("happy", "glad", "calm"),
        (INTRO + (
            ("One {DAY} day, {NAME} and {HIS} friend {FRIEND} were playing {AT_PLACE}.",
             "{NAME} and {FRIEND} were playing together {AT_PLACE}."),
            ("{FRIEND} was {A} {TRAIT} {F_KID}.", SKIP),
            ("They found {A} {COLOR} {TOY}.", "{FRIEND} brought {A} {COLOR} {TOY}.")),
         (("{NAME} wanted to play with the {TOY}, and {FRIEND} wanted it too.",
           "Both of them wanted the {TOY} at the same time."),
          ('"It is my turn!" said {NAME}.', '{NAME} shouted, "Give it to me!"'),
          ('"No, it is mine!" cried {FRIEND}.', '{FRIEND} said, "I had it first!"'),
          ("They pulled and pulled.", "They started to fight over it.",
           "They both held on and would not let go."),
          ("{NAME} felt {FEELING}.", "{NAME} was very {FEELING}.",
           "{NAME} felt so {FEELING} that {HIS} face turned red.")),
         (("{PARENT} heard them and came over.", "Just then, {PARENT} came to see what was wrong."),
          ('"Why don\'t you take turns?" asked {PARENT}.',
           '{PARENT} said, "Toys are more fun when we share."'),
          ("{NAME} thought about it for a moment.", SKIP),
          ('"You can go first," said {NAME}.',
           '{NAME} gave the {TOY} to {FRIEND} and said, "You go first."')),
         (("{FRIEND} smiled a big smile.", "{FRIEND} was so happy.", SKIP),
          ("They took turns with the {TOY} all afternoon.",
           "Then they played with the {TOY} together."),
          ("{NAME} felt {END_FEELING}.", "{NAME} felt {END_FEELING} inside.",
           "Now {NAME} was {END_FEELING}, and {FRIEND} was happy too.")),
         (("{NAME} learned that sharing is more fun than fighting.",
           "From then on, {NAME} and {FRIEND} always shared their toys.", SKIP), CLOSING)),
        (("who", "Who did {hero} play with?", "friend"),
         ("who", "Who came over when they fought?", "parent"),
         ("what", "What did {hero} and {friend} both want?", "object_phrase"),
         ("feeling", "How did {hero} feel when they fought over the {object}?", "feeling")),
    ),
    "helping_animal": Shape(
        "ANIMAL", ("worried", "sad", "sorry"), ("proud", "happy", "glad"),
        (INTRO + (
            ("One {DAY} day, {NAME} was walking {AT_PLACE} with {PARENT}.",
             "One {DAY} day, {NAME} and {PARENT} went for a walk {AT_PLACE}."),
            SCENE,
            ("Suddenly, {HE} heard a soft little sound.", "{HE} heard a small cry near the path.")),
         (("{NAME} looked and saw {A} {SIZE} {ANIMAL}.", "It was {A} {SIZE} {ANIMAL}!"),
          ("It looked very scared.", "Its eyes were big and sad.", "It was shaking a little."),
          ("The {ANIMAL} {TROUBLE}.", "Oh no, the poor {ANIMAL} {TROUBLE}!"),
          ("{NAME} felt {FEELING} for the little {ANIMAL}.", "{NAME} felt {FEELING}."),
          ('"We have to help it!" said {NAME}.', '{NAME} asked, "Can we help it, {PARENT}?"')),
         (('"Yes, we can," said {PARENT}.', '{PARENT} nodded and said, "Be gentle."',
           "{PARENT} showed {HIM} what to do.", SKIP),
          ("{NAME} {RESCUE}.", "Very carefully, {NAME} {RESCUE}."),
          ("It took a long time, but {NAME} did not give up.", "{PARENT} helped a little bit too."),
          ("The {ANIMAL} was safe now.", "Soon the {ANIMAL} was safe and happy."),
          ("It looked at {NAME} as if to say thank you.", "It made a happy little sound.")),
         (("{NAME} felt {END_FEELING}.", "{NAME} felt warm and {END_FEELING} inside.",
           "{NAME} was very {END_FEELING} that {HE} could help."),
          ('"You are a kind {KID}," said {PARENT}.', SKIP),
          ("{NAME} learned that it is good to be kind to animals.",
           "From then on, {NAME} looked for the {ANIMAL} every day.", SKIP)),
         (CLOSING,)),
        (("who", "Who was with {hero}?", "parent"),
         ("what", "What animal did {hero} help?", "animal_phrase"),
         ("feeling", "How did {hero} feel when {he} saw the {animal}?", "feeling")),
    ),
    "trip": Shape(
        "ANIMAL", ("worried", "scared", "sad", "tired"), ("happy", "glad", "cozy", "excited"),
        (INTRO + (
            ('One {DAY} morning, {PARENT} said, "Let\'s go to the {PLACE} today!"',
             '"Can we go to the {PLACE}?" asked {NAME} one {DAY} morning.'),
            ("{NAME} was so excited.", "{NAME} jumped up and down."),
            SCENE,
            ("{HE} asked {HIS} friend {FRIEND} to come too.", "{HIS} friend {FRIEND} came along too.")),
         (("{AT_PLACE}, they saw {A} {ANIMAL}.", "They saw {A} {SIZE} {ANIMAL} {AT_PLACE}."),
          ("The {ANIMAL} was funny to watch.", "{NAME} waved at the {ANIMAL}, and it looked back.",
           "They watched the {ANIMAL} for a long time."),
          ("{NAME} and {FRIEND} played and ran all morning.", "They played games and laughed a lot."),
          ("For lunch, they shared {A} {FOOD}.", "They had {A} {FOOD} for a snack.", SKIP)),
         (("But then {MISHAP}.", "Suddenly, {MISHAP}."),
          ("{NAME} felt {FEELING}.", "{NAME} felt a little {FEELING}."),
          ('"Oh no!" cried {NAME}.', '"Oh dear," said {FRIEND}.'),
          ('"What do we do now?" asked {FRIEND}.', '{NAME} said, "I want to go home."', SKIP)),
         (("Luckily, {REMEDY}.", "{PARENT} had a good idea, and {REMEDY}."),
          ("Soon everything was fine again.", SKIP),
          ("{NAME} felt {END_FEELING}.", "{NAME} felt {END_FEELING} again."),
          ('"This was the best day ever!" said {NAME}.', '{NAME} said, "I love the {PLACE}!"')),
         (("{NAME} could not wait to go back to the {PLACE}.",
           "That night, {NAME} dreamed about the {ANIMAL}.", SKIP), CLOSING)),
        (("who", "Who came along with {hero}?", "friend"),
         ("what", "What animal did they see?", "animal_phrase"),
         ("what", "What did they eat?", "food_phrase"),
         ("feeling", "How did {hero} feel when things went wrong?", "feeling")),
    ),
    "making": Shape(
        "MADE", ("sad", "upset", "grumpy", "cross"), ("proud", "happy"),
        (INTRO + (
            ("{NAME} wanted to make {A} {MADE} for {PARENT}.",
             "One {DAY} day, {NAME} decided to make {A} {MADE} for {PARENT}."),
            ("{HE} sat down {AT_PLACE} and got to work.", "{NAME} got everything ready {AT_PLACE}."),
            ("It was going to be a big surprise.", SKIP)),
         (("But making {A} {MADE} was hard.", "It was harder than {HE} thought."),
          ("{HE} tried and tried.", "{HE} tried again and again, but it did not work."),
          ("The first {MADE} fell apart.", "{HIS} {MADE} did not look right.", "Everything got messy."),
          ("{NAME} felt {FEELING}.", "{NAME} was so {FEELING} that {HE} wanted to stop."),
          ('"I can\'t do it," said {NAME}.', SKIP)),
         (("Then {HIS} friend {FRIEND} came by.", "Just then, {FRIEND} came over to play."),
          ('"Let\'s try again together," said {FRIEND}.',
           '{FRIEND} said, "Don\'t give up. I will help you."'),
          ("This time they went slowly and carefully.", "They worked together and took their time.",
           "They fixed the broken parts with tape and glue."),
          ("{FRIEND} held it still while {NAME} finished it.", SKIP)),
         (("At last, the {MADE} was ready.", "Soon the {MADE} was done, and it looked great."),
          ("{NAME} gave it to {PARENT}.", "{NAME} ran to show it to {PARENT}."),
          ('{PARENT} said, "It is beautiful! Thank you!"', '"I love it!" said {PARENT}.'),
          ("{NAME} felt {END_FEELING}.", "{NAME} smiled and felt {END_FEELING}.")),
         (("{NAME} learned to never give up.",
           "{NAME} learned that hard things get easier when friends help.", SKIP), CLOSING)),
        (("who", "Who helped {hero}?", "friend"),
         ("who", "Who was the {object} for?", "parent"),
         ("what", "What did {hero} make?", "object_phrase"),
         ("feeling", "How did {hero} feel when the {object} went wrong?", "feeling")),
    ),
    "new_friend": Shape(
        "TOY", ("lonely", "shy", "sad", "bored"), ("happy", "glad", "cheerful"),
        (INTRO + (
            ("One {DAY} day, {NAME} went to the {PLACE} with {PARENT}.",
             "{PARENT} took {NAME} to the {PLACE}."),
            SCENE,
            ("Many children were playing {AT_PLACE}.", "{AT_PLACE}, lots of children were playing."),
            ("But {NAME} did not know anyone.", "{NAME} did not have anyone to play with."),
            ("{HE} wanted to play, but {HE} did not know what to say.",
             "{HE} watched the other children from far away."),
            ("{HE} felt {FEELING}.", "{NAME} felt {FEELING} and sat alone on a bench.",
             "{NAME} was very {FEELING}.")),
         (("Then a {F_KID} named {FRIEND} came over.",
           "After a while, a {F_KID} named {FRIEND} walked up to {HIM}."),
          ("{F_HE} had {A} {COLOR} {TOY}.", "{FRIEND} was holding {A} {COLOR} {TOY}."),
          ('"Do you want to play with me?" asked {FRIEND}.',
           '{FRIEND} smiled and said, "Hi! Do you want to play?"'),
          ('{NAME} said, "Yes, please!"', '"Yes! I would love to," said {NAME}.')),
         (("They played with the {TOY} all afternoon.", "They took turns with the {TOY} and ran around."),
          ("They ran, jumped and laughed together.", "They built a little house out of sticks and leaves.",
           "They played tag and then hide and seek.", "They pretended to be pirates on a big ship.",
           "They made a secret hideout under a tree."),
          ("They laughed and had lots of fun.", "The time went by very fast.", SKIP),
          ("{NAME} was not {FEELING} anymore.", SKIP),
          ("{HE} felt {END_FEELING}.", "{NAME} felt {END_FEELING}."),
          ('"Let\'s play again tomorrow!" said {FRIEND}.', SKIP)),
         (("Now {NAME} had a new friend.",
           "{NAME} learned that saying hello is a good way to make a friend.", SKIP), CLOSING)),
        (("who", "Who became {hero}'s new friend?", "friend"),
         ("what", "What toy did {friend} have?", "object_phrase"),
         ("feeling", "How did {hero} feel before {he} met {friend}?", "feeling")),
    ),
}
COMMON_QUESTIONS = (  # asked about every story
    ("who", "Who is the main character of the story?", "hero"),
    ("where", "Where did the story happen?", "at_place"),
    ("feeling", "How did {hero} feel at the end of the story?", "end_feeling"),
)
QA_KINDS = ("who", "what", "where", "feeling", "yes_no")
SPLITS = ("train", "validation")
VALIDATION_PERCENT = 5

TEMPLATES = tuple(dict.fromkeys(  # every template once, in order of appearance
    template
    for shape in SHAPES.values() for paragraph in shape.paragraphs for line in paragraph
    for template in ((line,) if isinstance(line, str) else line) if template
))
SHAPE_NAMES = tuple(SHAPES)
OUTDOOR_PLACES = tuple(PLACES)
HERO_SLOTS = ("NAME", "HE", "HIS", "HIM", "KID")
FRIEND_SLOTS = {"FRIEND": "NAME", "F_HE": "HE", "F_HIS": "HIS", "F_HIM": "HIM", "F_KID": "KID"}
SLOT_VALUES = {  # what each ungendered slot can say (the recogniser's word lists)
    "PARENT": PARENTS, "AGE": AGES, "DAY": DAYS, "COLOR": COLORS, "TRAIT": TRAITS,
    "SIZE": SIZES, "HOBBY": HOBBIES, "ANIMAL": ANIMALS, "TOY": TOYS, "FOOD": FOODS,
    "FEAR": tuple(FEARS), "MADE": tuple(MADE), "PLACE": tuple(ALL_PLACES),
    "AT_PLACE": tuple(f"{prep} the {place}" for place, prep in ALL_PLACES.items()),
    "SPOT": SPOTS,
    "FEELING": tuple(dict.fromkeys(f for s in SHAPES.values() for f in s.feelings)),
    "END_FEELING": tuple(dict.fromkeys(f for s in SHAPES.values() for f in s.end_feelings)),
    "TROUBLE": tuple(t for t, _ in ANIMAL_TROUBLES), "RESCUE": tuple(r for _, r in ANIMAL_TROUBLES),
    "MISHAP": tuple(m for m, _ in MISHAPS), "REMEDY": tuple(r for _, r in MISHAPS),
}
VOWELS = frozenset("aeiouAEIOU")


def grammar_data() -> list:
    """Every table above as plain lists and strings, in a fixed order (for a digest)."""
    shapes = [[name, list(s)] for name, s in SHAPES.items()]
    tables = [GIRL_NAMES, BOY_NAMES, PRONOUNS, PARENTS, AGES, DAYS, COLORS, TRAITS, SIZES, HOBBIES, ANIMALS,
              TOYS, FOODS, PLACES, INDOOR_PLACES, FEARS, MADE, SPOTS, ANIMAL_TROUBLES, MISHAPS,
              COMMON_QUESTIONS, VALIDATION_PERCENT]
    return [shapes, tables]
